//! `nsnet agent`: the per-host daemon of overlay networks, a front end.
//! For every overlay network this host has joined it keeps the host's
//! claim alive in etcd (a lease renewed at a third of its TTL, re-claimed
//! if it lapsed) and programs the peers as etcd reports them (list, then a
//! watch from the list's revision; re-list after a lost watch). It never
//! removes a peer because etcd is out of reach: only a deletion that etcd
//! reports, or a list that lacks the peer, does. It follows the local
//! record, so networks joined or left while it runs are picked up.
//!
//! The cluster store and the machine are seams (`api::overlay::Cluster`,
//! `api::Machine`): the loops are unit-tested against a fake store and a
//! fake machine (`tests.rs`). May import `api` and `model`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};

use crate::api::overlay::{
    change_peers, cluster_at, guard_networks, peer_of, reconcile_peers, ClaimChange, Cluster,
    ClusterError, Reclaim,
};
use crate::api::Machine;
use crate::model::overlay::{EtcdAccess, Overlay, Peer};
use crate::model::Network;
use crate::Nsnet;

#[cfg(test)]
mod tests;

/// How often the local record is re-read for networks joined or left.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Options {
    /// etcd endpoints replacing the recorded ones.
    pub etcd: Option<Vec<String>>,
    /// TLS files and user replacing the recorded ones, each where given.
    pub access: EtcdAccess,
}

/// One line on stderr (journald adds the time when it collects it; the
/// offset since start orders events across threads).
fn log(text: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("nsnet-agent: [{t:8.3}] {text}");
}

fn stop_flag() -> &'static AtomicBool {
    crate::api::live::stop_on(&[])
}

/// One overlay network this agent serves: its threads stop when `stop` is
/// set (the network was left) or the agent stops.
struct Member {
    stop: Arc<AtomicBool>,
}

fn stopped(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed) || stop_flag().load(Ordering::Relaxed)
}

/// Runs until SIGTERM or SIGINT, on the etcd clusters the networks name.
pub fn run(nsnet: &Nsnet, opts: &Options) -> crate::Result<()> {
    run_on(nsnet, opts, &|o| cluster_at(&o.etcd, &o.access))
}

/// The cluster store an overlay network lives in.
type Connect<'a> = &'a dyn Fn(&Overlay) -> Result<Arc<dyn Cluster>, ClusterError>;

/// `run`, with the cluster store `connect` makes for each network.
fn run_on(nsnet: &Nsnet, opts: &Options, connect: Connect) -> crate::Result<()> {
    crate::api::live::stop_on(&[libc::SIGTERM, libc::SIGINT]);
    crate::api::live::name_process(c"nsnet-agent");
    log(&format!("started (pid {})", std::process::id()));
    let mut members: BTreeMap<String, (Network, Member)> = BTreeMap::new();
    let (notes, noted) = mpsc::channel::<ConflictNote>();
    // The overlays whose VXLAN this host guards, as last made.
    let mut guarded: Option<Vec<crate::model::overlay::Guard>> = None;
    // Networks whose credentials could not be read, and why.
    let mut unusable: BTreeMap<String, String> = BTreeMap::new();
    while !stop_flag().load(Ordering::Relaxed) {
        let state = match nsnet.state() {
            Ok(s) => s,
            Err(e) => {
                log(&format!(
                    "reading the local record: {}",
                    crate::error_chain(&e)
                ));
                thread::sleep(FOLLOW_INTERVAL);
                continue;
            }
        };
        let mut wanted: BTreeMap<String, Network> = BTreeMap::new();
        for net in state.networks.values().filter(|n| n.overlay.is_some()) {
            let mut net = net.clone();
            if let Some(o) = net.overlay.as_mut() {
                if let Some(e) = &opts.etcd {
                    o.etcd = e.clone();
                }
                o.access = o.access.overridden_by(&opts.access);
            }
            wanted.insert(net.name.clone(), net);
        }
        members.retain(|name, (net, m)| {
            // Only the overlay's own settings matter: endpoints Docker
            // creates change the record, not what the agent serves.
            let same = |a: &Option<Overlay>, b: &Option<Overlay>| match (a, b) {
                (Some(a), Some(b)) => a.same_service(b),
                _ => false,
            };
            let keep = wanted.get(name).is_some_and(|w| {
                same(&w.overlay, &net.overlay) && w.subnets == net.subnets && w.bridge == net.bridge
            });
            if !keep {
                log(&format!("network {name}: left, no longer served"));
                m.stop.store(true, Ordering::Relaxed);
            }
            keep
        });
        // Before any peer is programmed: the guard's sets must exist.
        let guards: Vec<_> = wanted
            .values()
            .filter_map(|n| n.overlay.as_ref().map(|o| o.guard()))
            .collect();
        if guarded.as_ref() != Some(&guards) {
            let nets: Vec<&Network> = wanted.values().collect();
            match guard_networks(&*nsnet.machine(), &nets) {
                Ok(()) => {
                    log(&format!(
                        "VXLAN accepted only from peers, for {} network(s)",
                        guards.len()
                    ));
                    guarded = Some(guards);
                }
                Err(e) => log(&format!("guarding VXLAN: {}", crate::error_chain(&e))),
            }
        }
        for (name, net) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = members.entry(name) {
                match start(&net, connect, nsnet.machine(), &notes) {
                    Ok(member) => {
                        log(&format!("network {}: serving", net.name));
                        unusable.remove(&net.name);
                        slot.insert((net, member));
                    }
                    // Logged once per cause: the files may be fixed, so
                    // each pass tries again.
                    Err(e) => {
                        let text = crate::error_chain(&e);
                        if unusable.get(&net.name) != Some(&text) {
                            log(&format!("network {}: cannot reach etcd: {text}", net.name));
                            unusable.insert(net.name.clone(), text);
                        }
                    }
                }
            }
        }
        record_conflicts(nsnet, &noted);
        thread::sleep(FOLLOW_INTERVAL);
    }
    log("stopping on signal; kernel state and claims are left as they are");
    Ok(())
}

/// Notes in the local record what the claim keepers found about conflicts.
fn record_conflicts(nsnet: &Nsnet, noted: &mpsc::Receiver<ConflictNote>) {
    for (network, holder) in noted.try_iter() {
        if let Err(e) = nsnet.note_subnet_conflict(&network, holder) {
            log(&format!(
                "network {network}: recording the subnet conflict: {}",
                crate::error_chain(&e)
            ));
        }
    }
}

fn start(
    net: &Network,
    connect: Connect,
    machine: Arc<dyn Machine>,
    notes: &mpsc::Sender<ConflictNote>,
) -> Result<Member, ClusterError> {
    let stop = Arc::new(AtomicBool::new(false));
    let Some(o) = &net.overlay else {
        return Ok(Member { stop });
    };
    let cluster = connect(o)?;
    let (n1, s1, c1) = (net.clone(), stop.clone(), cluster.clone());
    let notes = notes.clone();
    thread::spawn(move || keep_claim(&n1, &*c1, &s1, &notes));
    let (n2, s2) = (net.clone(), stop.clone());
    thread::spawn(move || follow_peers(&n2, &*cluster, &*machine, &s2));
    Ok(Member { stop })
}

/// The host subnet of an overlay network.
fn host_subnet(net: &Network) -> Option<Ipv4Net> {
    net.overlay.as_ref()?;
    match net.subnet_v4()?.cidr {
        IpNet::V4(s) => Some(s),
        IpNet::V6(_) => None,
    }
}

/// Sleeps up to `d`, waking early to stop.
fn pause(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stopped(stop) {
        thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
}

/// The leases a host's claim and its hold are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leases {
    claim: i64,
    hold: i64,
}

/// What the claim-keeping thread tells the agent's main loop: another
/// host holds this host's subnet (`Some`), or no longer does (`None`).
type ConflictNote = (String, Option<IpAddr>);

/// Keeps this host's claim (and its hold) bound to live leases; claims
/// the same subnet, which the local bridge carries, again after the claim
/// lapsed. When another host took it meanwhile, the conflict is logged
/// and noted (the network is degraded) and the claim retried slowly, so
/// that the subnet comes back when that host leaves. When the network is
/// left, the leases are revoked.
fn keep_claim(
    net: &Network,
    cluster: &dyn Cluster,
    stop: &AtomicBool,
    notes: &mpsc::Sender<ConflictNote>,
) {
    let (Some(o), Some(subnet)) = (&net.overlay, host_subnet(net)) else {
        return;
    };
    let mut leases: Option<Leases> = None;
    // A hold lease still alive when the claim's lapsed.
    let mut hold: Option<i64> = None;
    let mut conflict = o.conflict.as_ref().map(|c| c.holder);
    let renew = Duration::from_secs(o.lease_ttl).max(Duration::from_secs(1)) / 3;
    let mut backoff = BACKOFF_MIN;
    while !stopped(stop) {
        let asked = Instant::now();
        let result = match leases {
            Some(l) => renew_both(cluster, l, renew),
            None => claim_again(net, cluster, subnet, hold).map(Some),
        };
        match result {
            Ok(Some(l)) => {
                if asked.elapsed() > renew {
                    log(&format!(
                        "network {}: renewing lease {:x} took {:.1} s (TTL {} s)",
                        net.name,
                        l.claim,
                        asked.elapsed().as_secs_f64(),
                        o.lease_ttl
                    ));
                }
                if leases != Some(l) {
                    log(&format!(
                        "network {}: holding {subnet} under lease {:x}",
                        net.name, l.claim
                    ));
                }
                if conflict.take().is_some() {
                    log(&format!(
                        "network {}: host subnet {subnet} is this host's again; no longer degraded",
                        net.name
                    ));
                    let _ = notes.send((net.name.clone(), None));
                }
                (leases, hold) = (Some(l), None);
                backoff = BACKOFF_MIN;
                pause(renew, stop);
            }
            Ok(None) => {
                log(&format!(
                    "network {}: lease lapsed; claiming {subnet} again",
                    net.name
                ));
                hold = leases.map(|l| l.hold);
                leases = None;
            }
            Err(ClusterError::SubnetTaken { holder, .. }) => {
                if conflict != Some(holder) {
                    log(&format!(
                        "network {}: DEGRADED: host subnet {subnet}, which this host's bridge and namespaces use, is now claimed by host {holder} (this host's claim lapsed while it was cut off from etcd). This host no longer announces it; the two hosts' namespaces cannot reach each other. Leave and join again (`nsnet network rm {} --force`, then `nsnet network create` as before): that gives this host another subnet and renumbers its namespaces.",
                        net.name, net.name
                    ));
                    let _ = notes.send((net.name.clone(), Some(holder)));
                    conflict = Some(holder);
                }
                pause(renew, stop);
            }
            Err(e) => {
                log(&format!("network {}: {}", net.name, crate::error_chain(&e)));
                pause(backoff, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    if let (Some(l), false) = (leases, stop_flag().load(Ordering::Relaxed)) {
        let _ = cluster.revoke(l.claim);
        let _ = cluster.revoke(l.hold);
    }
}

/// Renews both leases; `None` when either lapsed.
fn renew_both(
    cluster: &dyn Cluster,
    l: Leases,
    timeout: Duration,
) -> Result<Option<Leases>, ClusterError> {
    let claim = cluster.keep_alive(l.claim, timeout)?;
    let hold = cluster.keep_alive(l.hold, timeout)?;
    Ok((claim && hold).then_some(l))
}

/// Claims `subnet` again under a new lease, and a new hold lease unless
/// `hold` is still alive.
fn claim_again(
    net: &Network,
    cluster: &dyn Cluster,
    subnet: Ipv4Net,
    hold: Option<i64>,
) -> Result<Leases, ClusterError> {
    let o = net.overlay.as_ref().expect("an overlay network");
    let claim = cluster.grant(o.lease_ttl)?;
    let (hold, fresh) = match hold {
        Some(h) => (h, false),
        None => match cluster.grant(o.hold_ttl()) {
            Ok(h) => (h, true),
            Err(e) => {
                let _ = cluster.revoke(claim);
                return Err(e);
            }
        },
    };
    let again = Reclaim {
        reservation: o.reservation(),
        subnet,
        lease: claim,
        hold_lease: hold,
    };
    if let Err(e) = cluster.reclaim(&net.name, &o.config, &again) {
        let _ = cluster.revoke(claim);
        if fresh {
            let _ = cluster.revoke(hold);
        }
        return Err(e);
    }
    Ok(Leases { claim, hold })
}

/// Lists the peers, programs them all, then follows the changes; after a
/// lost watch (or a compaction) lists again.
fn follow_peers(net: &Network, cluster: &dyn Cluster, machine: &dyn Machine, stop: &AtomicBool) {
    if net.overlay.is_none() {
        return;
    }
    let mut backoff = BACKOFF_MIN;
    while !stopped(stop) {
        match cluster.claims(&net.name) {
            Ok((claims, revision)) => {
                let peers: BTreeMap<Ipv4Net, Peer> = claims
                    .iter()
                    .filter_map(|c| peer_of(c.subnet, &c.reservation).map(|p| (c.subnet, p)))
                    .collect();
                let list: Vec<Peer> = peers.values().cloned().collect();
                let started = Instant::now();
                match reconcile_peers(machine, net, &list) {
                    Ok(changed) => log(&format!(
                        "network {}: {} host(s) listed, {changed} peer(s) programmed in {:.1} ms",
                        net.name,
                        list.len(),
                        started.elapsed().as_secs_f64() * 1000.0
                    )),
                    Err(e) => log(&format!(
                        "network {}: programming peers: {}",
                        net.name,
                        crate::error_chain(&e)
                    )),
                }
                backoff = BACKOFF_MIN;
                let watched = watch(net, cluster, machine, revision, peers, stop);
                if let Err(e) = watched {
                    log(&format!(
                        "network {}: watch lost ({}); listing again",
                        net.name,
                        crate::error_chain(&e)
                    ));
                }
            }
            Err(e) => {
                log(&format!("network {}: {}", net.name, crate::error_chain(&e)));
                pause(backoff, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Follows the claims from `revision`, programming each change.
fn watch(
    net: &Network,
    cluster: &dyn Cluster,
    machine: &dyn Machine,
    revision: i64,
    mut peers: BTreeMap<Ipv4Net, Peer>,
    stop: &AtomicBool,
) -> Result<(), ClusterError> {
    let name = net.name.clone();
    cluster.watch_claims(&name, revision, &mut |changes| {
        if stopped(stop) {
            return false;
        }
        let (add, remove) = apply_changes(&mut peers, changes);
        if add.is_empty() && remove.is_empty() {
            return true;
        }
        let removed: BTreeSet<String> = remove.iter().map(|p| p.subnet.to_string()).collect();
        let added: BTreeSet<String> = add.iter().map(|p| p.subnet.to_string()).collect();
        let started = Instant::now();
        match change_peers(machine, net, &add, &remove) {
            Ok(()) => log(&format!(
                "network {name}: peers added {added:?}, withdrawn {removed:?} ({:.2} ms)",
                started.elapsed().as_secs_f64() * 1000.0
            )),
            Err(e) => log(&format!(
                "network {name}: programming peers: {}",
                crate::error_chain(&e)
            )),
        }
        true
    })
}

/// Applies a watch's changes to the known peers; returns the peers to add
/// and those to remove (a changed peer is both).
fn apply_changes(
    peers: &mut BTreeMap<Ipv4Net, Peer>,
    changes: Vec<ClaimChange>,
) -> (Vec<Peer>, Vec<Peer>) {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for change in changes {
        match change {
            ClaimChange::Claimed(c) => {
                let Some(p) = peer_of(c.subnet, &c.reservation) else {
                    continue;
                };
                if let Some(old) = peers.insert(p.subnet, p.clone()) {
                    if old == p {
                        continue;
                    }
                    remove.push(old);
                }
                add.push(p);
            }
            ClaimChange::Released(subnet) => remove.extend(peers.remove(&subnet)),
        }
    }
    (add, remove)
}

//! `nsnet agent`: the per-host daemon of overlay networks, a front end.
//! For every overlay network this host has joined it keeps the host's
//! claim alive in etcd (a lease renewed at a third of its TTL, re-claimed
//! if it lapsed) and programs the peers as etcd reports them (list, then a
//! watch from the list's revision; re-list after a lost watch). It never
//! removes a peer because etcd is out of reach: only a deletion that etcd
//! reports, or a list that lacks the peer, does. It follows the local
//! record, so networks joined or left while it runs are picked up.
//!
//! May import `api`, `model` and, until the cluster seam exists, `cluster`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};

use crate::api::overlay::{change_peers, peer_of, reconcile_peers};
use crate::cluster::etcd::{Event, WatchMessage};
use crate::cluster::{claim_of, ClaimRequest, Registry};
use crate::model::overlay::{keys, Peer};
use crate::model::Network;
use crate::Nsnet;

/// How often the local record is re-read for networks joined or left.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Options {
    /// etcd endpoints replacing the recorded ones.
    pub etcd: Option<Vec<String>>,
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

/// Runs until SIGTERM or SIGINT.
pub fn run(nsnet: &Nsnet, opts: &Options) -> crate::Result<()> {
    crate::api::live::stop_on(&[libc::SIGTERM, libc::SIGINT]);
    crate::api::live::name_process(c"nsnet-agent");
    log(&format!("started (pid {})", std::process::id()));
    let mut members: BTreeMap<String, (Network, Member)> = BTreeMap::new();
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
            if let (Some(o), Some(e)) = (net.overlay.as_mut(), &opts.etcd) {
                o.etcd = e.clone();
            }
            wanted.insert(net.name.clone(), net);
        }
        members.retain(|name, (net, m)| {
            let keep = wanted.get(name).is_some_and(|w| w.same_settings(net));
            if !keep {
                log(&format!("network {name}: left, no longer served"));
                m.stop.store(true, Ordering::Relaxed);
            }
            keep
        });
        for (name, net) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = members.entry(name) {
                log(&format!("network {}: serving", net.name));
                let member = start(&net);
                slot.insert((net, member));
            }
        }
        thread::sleep(FOLLOW_INTERVAL);
    }
    log("stopping on signal; kernel state and claims are left as they are");
    Ok(())
}

fn start(net: &Network) -> Member {
    let stop = Arc::new(AtomicBool::new(false));
    let (n1, s1) = (net.clone(), stop.clone());
    thread::spawn(move || keep_claim(&n1, &s1));
    let (n2, s2) = (net.clone(), stop.clone());
    thread::spawn(move || follow_peers(&n2, &s2));
    Member { stop }
}

/// The host subnet and registry of an overlay network.
fn parts(net: &Network) -> Option<(Ipv4Net, Registry)> {
    let o = net.overlay.as_ref()?;
    match net.subnet_v4()?.cidr {
        IpNet::V4(s) => Some((s, Registry::new(&o.etcd))),
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

/// Keeps this host's claim bound to a live lease; claims it again (the
/// same subnet, which the local bridge carries) after the lease lapsed.
/// When the network is left, the lease is revoked.
fn keep_claim(net: &Network, stop: &AtomicBool) {
    let (Some(o), Some((subnet, registry))) = (&net.overlay, parts(net)) else {
        return;
    };
    let mut lease: Option<i64> = None;
    let renew = Duration::from_secs(o.lease_ttl).max(Duration::from_secs(1)) / 3;
    let mut backoff = BACKOFF_MIN;
    while !stopped(stop) {
        let asked = Instant::now();
        let result = match lease {
            Some(id) => registry
                .client()
                .keep_alive(id, renew)
                .map(|alive| alive.then_some(id)),
            None => claim_again(net, &registry, subnet).map(Some),
        };
        match result {
            Ok(Some(id)) => {
                if asked.elapsed() > renew {
                    log(&format!(
                        "network {}: renewing lease {id:x} took {:.1} s (TTL {} s)",
                        net.name,
                        asked.elapsed().as_secs_f64(),
                        o.lease_ttl
                    ));
                }
                if lease != Some(id) {
                    log(&format!(
                        "network {}: holding {subnet} under lease {id:x}",
                        net.name
                    ));
                }
                lease = Some(id);
                backoff = BACKOFF_MIN;
                pause(renew, stop);
            }
            Ok(None) => {
                log(&format!(
                    "network {}: lease lapsed; claiming {subnet} again",
                    net.name
                ));
                lease = None;
            }
            Err(e) => {
                log(&format!("network {}: {}", net.name, crate::error_chain(&e)));
                pause(backoff, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    if let (Some(id), false) = (lease, stop_flag().load(Ordering::Relaxed)) {
        let _ = registry.client().revoke(id);
    }
}

fn claim_again(net: &Network, registry: &Registry, subnet: Ipv4Net) -> crate::cluster::Result<i64> {
    let o = net.overlay.as_ref().expect("an overlay network");
    let (_, defined_at) = registry.define_or_join(&net.name, &o.config)?;
    let lease = registry.client().grant(o.lease_ttl)?;
    registry.claim(&ClaimRequest {
        network: &net.name,
        config: &o.config,
        defined_at,
        reservation: &o.reservation(),
        lease,
        wanted: Some(subnet),
        seed: 0,
    })?;
    Ok(lease)
}

/// Lists the peers, programs them all, then follows the changes; after a
/// lost watch (or a compaction) lists again.
fn follow_peers(net: &Network, stop: &AtomicBool) {
    let Some((_, registry)) = parts(net) else {
        return;
    };
    let mut backoff = BACKOFF_MIN;
    while !stopped(stop) {
        match registry.claims(&net.name) {
            Ok((claims, revision)) => {
                let peers: BTreeMap<Ipv4Net, Peer> = claims
                    .iter()
                    .filter_map(|c| peer_of(c.subnet, &c.reservation).map(|p| (c.subnet, p)))
                    .collect();
                let list: Vec<Peer> = peers.values().cloned().collect();
                let started = Instant::now();
                match reconcile_peers(net, &list) {
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
                let watched = watch(net, &registry, revision, peers, stop);
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

fn watch(
    net: &Network,
    registry: &Registry,
    revision: i64,
    mut peers: BTreeMap<Ipv4Net, Peer>,
    stop: &AtomicBool,
) -> crate::cluster::Result<()> {
    let name = net.name.clone();
    registry
        .client()
        .watch_prefix(&keys::subnets(&name), revision + 1, |msg| {
            if stopped(stop) {
                return false;
            }
            let events = match msg {
                WatchMessage::Compacted { .. } => return false,
                WatchMessage::Events { events, .. } => events,
            };
            let (mut add, mut remove) = (Vec::new(), Vec::new());
            for e in events {
                match e {
                    Event::Put(kv) => {
                        let Some(p) = claim_of(&name, &kv)
                            .ok()
                            .and_then(|c| peer_of(c.subnet, &c.reservation))
                        else {
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
                    Event::Delete { key, .. } => {
                        if let Some(old) =
                            keys::parse_subnet(&name, &key).and_then(|s| peers.remove(&s))
                        {
                            remove.push(old);
                        }
                    }
                }
            }
            if add.is_empty() && remove.is_empty() {
                return true;
            }
            let removed: BTreeSet<String> = remove.iter().map(|p| p.subnet.to_string()).collect();
            let added: BTreeSet<String> = add.iter().map(|p| p.subnet.to_string()).collect();
            let started = Instant::now();
            match change_peers(net, &add, &remove) {
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

//! The agent's loops against a fake cluster store and a fake machine:
//! peers coming and going, a lost watch, a compaction, the store out of
//! reach, a lapsed lease. Each fake store plays a script and stops the
//! loop when the script is done.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;

use super::{follow_peers, keep_claim};
use crate::api::overlay::{Claim, ClaimChange, Cluster, ClusterError, Reclaim};
use crate::host::fake::Fake;
use crate::host::Probe;
use crate::model::overlay::{Overlay, OverlayConfig, Peer, Reservation};
use crate::model::{test_network, Network};

const VXLAN: &str = "nsv4242";

/// What one `watch_claims` call does.
enum Watch {
    /// Hands these batches over, then ends as asked to stop.
    Deliver(Vec<Vec<ClaimChange>>),
    /// The stream breaks.
    Lost,
    /// The store compacted past the revision: the caller lists again.
    Compacted,
}

#[derive(Default)]
struct Script {
    /// `None`: the store is out of reach for that call.
    claims: VecDeque<Option<Vec<Claim>>>,
    watches: VecDeque<Watch>,
    keep_alives: VecDeque<Option<bool>>,
    // What the loops did.
    listed: usize,
    watched_from: Vec<i64>,
    /// Per reclaim: `Some(holder)`: another host has the subnet.
    taken: VecDeque<Option<IpAddr>>,
    grants: i64,
    /// Claim lease, hold lease, subnet.
    reclaimed: Vec<(i64, i64, Ipv4Net)>,
    revoked: Vec<i64>,
}

/// A cluster store that plays a script; when the script runs out it stops
/// the loop under test.
struct FakeCluster {
    script: Mutex<Script>,
    stop: Arc<AtomicBool>,
}

fn unreachable() -> ClusterError {
    ClusterError::Unreachable {
        endpoints: "http://192.0.2.10:2379".into(),
        reason: "the test's store is down".into(),
    }
}

impl FakeCluster {
    fn new(script: Script) -> (FakeCluster, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        let c = FakeCluster {
            script: Mutex::new(script),
            stop: stop.clone(),
        };
        (c, stop)
    }

    fn done(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }
}

impl Cluster for FakeCluster {
    fn claims(&self, _network: &str) -> Result<(Vec<Claim>, i64), ClusterError> {
        let mut s = self.script();
        s.listed += 1;
        let revision = 10 * s.listed as i64;
        match s.claims.pop_front() {
            Some(Some(claims)) => Ok((claims, revision)),
            Some(None) => Err(unreachable()),
            None => {
                self.done();
                Err(unreachable())
            }
        }
    }

    fn watch_claims(
        &self,
        _network: &str,
        revision: i64,
        on: &mut dyn FnMut(Vec<ClaimChange>) -> bool,
    ) -> Result<(), ClusterError> {
        let next = {
            let mut s = self.script();
            s.watched_from.push(revision);
            s.watches.pop_front()
        };
        match next {
            Some(Watch::Deliver(batches)) => {
                for b in batches {
                    assert!(on(b), "the loop stopped a watch it had not finished");
                }
                self.done();
                Ok(())
            }
            Some(Watch::Lost) => Err(unreachable()),
            Some(Watch::Compacted) => Ok(()),
            None => {
                self.done();
                Ok(())
            }
        }
    }

    fn grant(&self, _ttl: u64) -> Result<i64, ClusterError> {
        let mut s = self.script();
        s.grants += 1;
        Ok(s.grants)
    }

    fn keep_alive(&self, _lease: i64, _timeout: Duration) -> Result<bool, ClusterError> {
        match self.script().keep_alives.pop_front() {
            Some(Some(alive)) => Ok(alive),
            Some(None) => Err(unreachable()),
            None => {
                self.done();
                Ok(true)
            }
        }
    }

    fn revoke(&self, lease: i64) -> Result<(), ClusterError> {
        self.script().revoked.push(lease);
        Ok(())
    }

    fn reclaim(
        &self,
        network: &str,
        _config: &OverlayConfig,
        again: &Reclaim,
    ) -> Result<(), ClusterError> {
        let mut s = self.script();
        if let Some(Some(holder)) = s.taken.pop_front() {
            return Err(ClusterError::SubnetTaken {
                network: network.to_string(),
                subnet: again.subnet,
                holder,
            });
        }
        s.reclaimed
            .push((again.lease, again.hold_lease, again.subnet));
        Ok(())
    }
}

/// This host's part of overlay network `lab`: host subnet 10.200.1.0/24,
/// VTEP 192.0.2.1.
fn network() -> Network {
    let mut net = test_network("lab", "lab", &["10.200.1.0/24"]);
    net.overlay = Some(Overlay {
        config: OverlayConfig {
            subnet: "10.200.0.0/16".parse().unwrap(),
            host_subnet_len: 24,
            vni: 4242,
            port: 4789,
        },
        etcd: vec!["http://192.0.2.10:2379".into()],
        access: Default::default(),
        vtep: "192.0.2.1".parse().unwrap(),
        underlay: "eth0".into(),
        vxlan: VXLAN.into(),
        vtep_mac: "02:00:00:00:00:01".into(),
        lease_ttl: 1,
        conflict: None,
    });
    net
}

/// The claim of host `n`: subnet 10.200.N.0/24 at VTEP 192.0.2.N.
fn claim(n: u8) -> Claim {
    Claim {
        subnet: format!("10.200.{n}.0/24").parse().unwrap(),
        reservation: Reservation {
            vtep: format!("192.0.2.{n}").parse().unwrap(),
            vtep_mac: format!("02:00:00:00:00:{n:02x}"),
        },
        lease: i64::from(n),
    }
}

fn peer(n: u8) -> Peer {
    let c = claim(n);
    crate::api::overlay::peer_of(c.subnet, &c.reservation).unwrap()
}

fn programmed(machine: &Fake) -> Vec<Peer> {
    let mut peers = machine.state().probe.peers(VXLAN).unwrap();
    peers.sort_by_key(|p| p.subnet);
    peers
}

#[test]
fn peers_come_and_go_as_the_store_reports_them() {
    let (cluster, stop) = FakeCluster::new(Script {
        claims: [Some(vec![claim(1), claim(2)])].into(),
        watches: [Watch::Deliver(vec![
            vec![ClaimChange::Claimed(claim(3))],
            vec![ClaimChange::Released(claim(2).subnet)],
        ])]
        .into(),
        ..Script::default()
    });
    let machine = Fake::default();
    follow_peers(&network(), &cluster, &machine, &stop);
    // This host's own claim is never a peer.
    assert_eq!(programmed(&machine), [peer(3)]);
    assert_eq!(cluster.script().watched_from, [10]);
}

#[test]
fn a_lost_watch_or_a_compaction_lists_again() {
    let (cluster, stop) = FakeCluster::new(Script {
        claims: [Some(vec![claim(2)]), Some(vec![claim(2), claim(3)])].into(),
        watches: [Watch::Lost, Watch::Compacted].into(),
        ..Script::default()
    });
    let machine = Fake::default();
    follow_peers(&network(), &cluster, &machine, &stop);
    assert_eq!(programmed(&machine), [peer(2), peer(3)]);
    let s = cluster.script();
    // Each watch from the revision of the list before it.
    assert_eq!(s.watched_from, [10, 20]);
    assert_eq!(
        s.listed, 3,
        "listed after the lost watch and after the compaction"
    );
}

#[test]
fn a_store_out_of_reach_takes_no_peer_away() {
    let (cluster, stop) = FakeCluster::new(Script {
        claims: [None, None, Some(vec![claim(2), claim(3)])].into(),
        watches: [Watch::Deliver(vec![])].into(),
        ..Script::default()
    });
    let machine = Fake::default();
    machine
        .state()
        .probe
        .carry_out(&crate::plan::Op::AddPeers {
            vxlan: VXLAN.into(),
            peers: vec![peer(2)],
        })
        .unwrap();
    follow_peers(&network(), &cluster, &machine, &stop);
    let applied = machine.take_applied();
    assert!(
        !applied
            .iter()
            .any(|op| matches!(op, crate::plan::Op::RemovePeers { .. })),
        "{applied:?}"
    );
    assert_eq!(programmed(&machine), [peer(2), peer(3)]);
}

/// `keep_claim` on this host's network, with the conflict notes it sent.
fn keep(cluster: &FakeCluster, stop: &AtomicBool) -> Vec<(String, Option<IpAddr>)> {
    let (notes, noted) = std::sync::mpsc::channel();
    keep_claim(&network(), cluster, stop, &notes);
    noted.try_iter().collect()
}

#[test]
fn a_lapsed_lease_is_claimed_again_for_the_same_subnet() {
    let (cluster, stop) = FakeCluster::new(Script {
        // The claim's lease lapsed, the hold's did not.
        keep_alives: [Some(false), Some(true)].into(),
        ..Script::default()
    });
    assert_eq!(keep(&cluster, &stop), []);
    let s = cluster.script();
    let mine: Ipv4Net = "10.200.1.0/24".parse().unwrap();
    // The hold outlived the claim: it is kept, the claim's lease is new.
    assert_eq!(s.reclaimed, [(1, 2, mine), (3, 2, mine)]);
    // The network was left (its stop flag, not the agent's): the leases go.
    assert_eq!(s.revoked, [3, 2]);
}

#[test]
fn a_store_out_of_reach_keeps_the_claim_and_its_lease() {
    let (cluster, stop) = FakeCluster::new(Script {
        keep_alives: [None, None, Some(true)].into(),
        ..Script::default()
    });
    keep(&cluster, &stop);
    let s = cluster.script();
    assert_eq!(s.grants, 2, "no new lease while the store was out of reach");
    assert_eq!(s.reclaimed.len(), 1);
}

#[test]
fn a_subnet_another_host_took_is_noted_and_claimed_back_when_free() {
    let other: IpAddr = "192.0.2.9".parse().unwrap();
    let (cluster, stop) = FakeCluster::new(Script {
        taken: [Some(other), Some(other), None].into(),
        ..Script::default()
    });
    let notes = keep(&cluster, &stop);
    // Noted once while it lasted, cleared once when the subnet came back.
    assert_eq!(
        notes,
        [("lab".to_string(), Some(other)), ("lab".to_string(), None)]
    );
    let s = cluster.script();
    // The leases of each refused claim are given back at once; the last
    // two when the network is left.
    assert_eq!(s.revoked, [1, 2, 3, 4, 5, 6]);
    assert_eq!(s.reclaimed.len(), 1);
}

#[test]
fn the_vxlan_guard_lets_exactly_the_peers_through() {
    let (cluster, stop) = FakeCluster::new(Script {
        claims: [Some(vec![claim(1), claim(2), claim(4)])].into(),
        watches: [Watch::Deliver(vec![
            vec![ClaimChange::Claimed(claim(3))],
            vec![ClaimChange::Released(claim(2).subnet)],
        ])]
        .into(),
        ..Script::default()
    });
    let machine = Fake::default();
    let net = network();
    crate::api::overlay::guard_networks(&machine, &[&net]).unwrap();
    follow_peers(&net, &cluster, &machine, &stop);
    let through = machine.state().probe.vxlan_guards[&4242].clone();
    let mut through: Vec<String> = through.iter().map(ToString::to_string).collect();
    through.sort();
    // Never this host's own VTEP; the peers as they came and went.
    assert_eq!(through, ["192.0.2.3", "192.0.2.4"]);
    // Leaving the network takes its guard.
    crate::api::overlay::guard_networks(&machine, &[]).unwrap();
    assert!(machine.state().probe.vxlan_guards.is_empty());
}

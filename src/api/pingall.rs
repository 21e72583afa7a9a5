//! `pingall`, as Mininet has it: every namespace pings every address it
//! should reach (a namespace on the same network, the other end of a
//! link, a namespace on the same switches in the same subnet, an address
//! one of its static routes covers), all in parallel.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::Result;
use crate::kernel::ping;
use crate::model::{NsRef, State};

/// One expected pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Pair {
    pub from: String,
    pub to: String,
    pub address: IpAddr,
    /// Why it should work: `network NAME`, `link`, `route DEST via GW`.
    pub because: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub pair: Pair,
    pub sent: u32,
    pub received: u32,
    /// Average round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Why no ping could be sent, if none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.received > 0
    }

    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            100.0
        } else {
            100.0 * f64::from(self.sent - self.received) / f64::from(self.sent)
        }
    }
}

/// Every (namespace, address) of the record: attachments and link ends.
fn addresses(state: &State) -> Vec<(String, IpNet)> {
    let mut out = Vec::new();
    for net in state.networks.values() {
        for a in &net.attachments {
            out.extend(a.addresses.iter().map(|x| (a.namespace.to_string(), *x)));
        }
    }
    for l in &state.links {
        for (e, addrs) in l.ends.iter().zip(&l.addresses) {
            out.extend(addrs.iter().map(|x| (e.namespace.clone(), *x)));
        }
    }
    out
}

/// The pairs the record says should reach each other.
pub fn expected(state: &State) -> Vec<Pair> {
    // One probe per (source, address): the first reason found is shown.
    let mut pairs: BTreeMap<(String, IpAddr), Pair> = BTreeMap::new();
    let mut add = |from: &str, to: &str, address: IpAddr, because: String| {
        if from != to {
            pairs
                .entry((from.to_string(), address))
                .or_insert_with(|| Pair {
                    from: from.to_string(),
                    to: to.to_string(),
                    address,
                    because,
                });
        }
    };
    for net in state.networks.values().filter(|n| n.icc) {
        for a in &net.attachments {
            for b in &net.attachments {
                for addr in &b.addresses {
                    add(
                        &a.namespace.to_string(),
                        &b.namespace.to_string(),
                        addr.addr(),
                        format!("network {}", net.name),
                    );
                }
            }
        }
    }
    // A switch has no address to ping from (its links are in `switched`).
    let switch = |e: &crate::model::lab::Endpoint| crate::plan::lab::is_switch(state, &e.namespace);
    for l in state.links.iter().filter(|l| !l.ends.iter().any(switch)) {
        for (i, j) in [(0, 1), (1, 0)] {
            for addr in &l.addresses[j] {
                add(
                    &l.ends[i].namespace,
                    &l.ends[j].namespace,
                    addr.addr(),
                    "link".into(),
                );
            }
        }
    }
    for (from, to, addr, switch) in switched(state) {
        add(&from, &to, addr, format!("switch {switch}"));
    }
    let all = addresses(state);
    for (ns, lab) in &state.lab_namespaces {
        for route in &lab.routes {
            for (to, addr) in all
                .iter()
                .filter(|(_, a)| route.destination.contains(&a.addr()))
            {
                add(ns, to, addr.addr(), format!("route {route}"));
            }
        }
    }
    pairs.into_values().collect()
}

/// The pairs that share a segment of switches (switches joined by links)
/// and a subnet: `(from, to, address, the switch `to` is on)`.
fn switched(state: &State) -> Vec<(String, String, IpAddr, String)> {
    let is_switch = |ns: &str| crate::plan::lab::is_switch(state, ns);
    // Each switch's segment: the smallest switch name reachable from it.
    let mut segment: BTreeMap<&str, &str> = BTreeMap::new();
    for (ns, _) in state.lab_namespaces.iter().filter(|(_, r)| r.switch) {
        segment.insert(ns, ns);
    }
    fn root<'a>(seg: &BTreeMap<&'a str, &'a str>, mut s: &'a str) -> &'a str {
        while seg[s] != s {
            s = seg[s];
        }
        s
    }
    for l in &state.links {
        let [a, b] = &l.ends;
        if is_switch(&a.namespace) && is_switch(&b.namespace) {
            let (ra, rb) = (root(&segment, &a.namespace), root(&segment, &b.namespace));
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            segment.insert(hi, lo);
        }
    }
    // Hosts' ends on switches: (segment, host, switch, addresses).
    let mut ports = Vec::new();
    for l in &state.links {
        for (i, j) in [(0, 1), (1, 0)] {
            let (host, sw) = (&l.ends[i], &l.ends[j]);
            if is_switch(&sw.namespace) && !is_switch(&host.namespace) {
                let seg = root(&segment, &sw.namespace);
                ports.push((seg, &host.namespace, &sw.namespace, &l.addresses[i]));
            }
        }
    }
    let mut out = Vec::new();
    for (seg, from, _, mine) in &ports {
        for (other, to, switch, theirs) in &ports {
            let reachable = theirs
                .iter()
                .filter(|t| mine.iter().any(|m| m.contains(&t.addr())));
            for addr in reachable.filter(|_| seg == other && from != to) {
                out.push((
                    from.to_string(),
                    to.to_string(),
                    addr.addr(),
                    switch.to_string(),
                ));
            }
        }
    }
    out
}

/// At most this many pings run at once.
const PARALLEL: usize = 64;

/// Pings every pair, `count` times each, in parallel.
pub fn run(pairs: &[Pair], count: u32, timeout: Duration) -> Result<Vec<Outcome>> {
    let opts = ping::Options {
        count,
        timeout,
        interval: Duration::from_millis(200),
        stop: None,
    };
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(PARALLEL) {
        let results: Vec<Outcome> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|p| {
                    let opts = &opts;
                    s.spawn(move || probe(p, opts))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a ping thread does not panic"))
                .collect()
        });
        out.extend(results);
    }
    Ok(out)
}

fn probe(p: &Pair, opts: &ping::Options) -> Outcome {
    let outcome = |sent, received, rtt_ms, error| Outcome {
        pair: p.clone(),
        sent,
        received,
        rtt_ms,
        error,
    };
    let ns = match NsRef::parse(&p.from) {
        Ok(ns) => ns,
        Err(e) => return outcome(0, 0, None, Some(e.to_string())),
    };
    match ping::ping(&ns, p.address, opts, |_| {}) {
        Ok(s) => {
            let rtt = (!s.rtts.is_empty()).then(|| {
                s.rtts.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / s.rtts.len() as f64
            });
            outcome(s.transmitted, s.received, rtt, None)
        }
        Err(e) => outcome(0, 0, None, Some(crate::error_chain(&e))),
    }
}

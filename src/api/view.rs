//! What `nsnet ui` shows: the recorded topology with `check`'s drift
//! marked on the objects it concerns, and each interface's traffic
//! counters. A `Watch` keeps one session on the machine (its namespace
//! handles) for as long as the view is open, so a refresh costs a dump
//! per namespace, not a namespace open.

use serde::Serialize;

use super::{Nsnet, Result};
use crate::check::{Finding, Report};
use crate::model::graph::Graph;
use crate::model::{NsRef, State};
use crate::plan::Target;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Topology {
    pub networks: Vec<NetworkView>,
    pub namespaces: Vec<NamespaceView>,
    pub attachments: Vec<AttachmentView>,
    pub links: Vec<LinkView>,
    /// Every finding of `check`, as text.
    pub drift: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetworkView {
    pub name: String,
    pub subnets: Vec<String>,
    pub drifted: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NamespaceView {
    pub name: String,
    pub router: bool,
    pub switch: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttachmentView {
    pub namespace: String,
    pub network: String,
    pub ifname: String,
    pub addresses: Vec<String>,
    /// Published ports, as `HOST_PORT:PORT/PROTO`.
    pub ports: Vec<String>,
    pub impaired: String,
    pub drifted: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkView {
    /// `NAMESPACE:IFNAME` of each end.
    pub ends: [String; 2],
    pub addresses: [Vec<String>; 2],
    pub impaired: [String; 2],
    pub drifted: bool,
}

/// An interface's byte counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counter {
    pub namespace: String,
    pub ifname: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The view of `state`, with the drift of `report` on what it concerns.
pub fn topology(state: &State, report: &Report) -> Topology {
    let g = Graph::from_state(state);
    let network_drift = |net: &str| {
        report
            .drift
            .iter()
            .any(|f| f.network() == Some(net) && f.namespace().is_none())
    };
    let networks = g
        .networks
        .iter()
        .map(|(name, subnets)| NetworkView {
            name: name.clone(),
            subnets: subnets.clone(),
            drifted: network_drift(name),
        })
        .collect();
    let namespaces = g
        .namespaces
        .iter()
        .map(|(name, router)| NamespaceView {
            name: name.clone(),
            router: *router,
            switch: g.switches.contains(name),
        })
        .collect();
    let mut attachments = Vec::new();
    for net in state.networks.values() {
        for a in &net.attachments {
            let ns = a.namespace.to_string();
            let end = crate::model::lab::Endpoint {
                namespace: ns.clone(),
                ifname: a.ifname.clone(),
            };
            attachments.push(AttachmentView {
                drifted: report
                    .drift
                    .iter()
                    .any(|f| f.is_about(&net.name, &a.namespace)),
                namespace: ns,
                network: net.name.clone(),
                ifname: a.ifname.clone(),
                addresses: a.addresses.iter().map(|x| x.to_string()).collect(),
                ports: a
                    .ports
                    .iter()
                    .map(|p| format!("{}:{}/{}", p.host_port, p.port, p.protocol))
                    .collect(),
                impaired: state
                    .impairments
                    .get(&end)
                    .map(|r| r.impairment.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let links =
        g.links
            .iter()
            .map(|l| LinkView {
                ends: [l.ends[0].to_string(), l.ends[1].to_string()],
                addresses: l.addresses.clone(),
                impaired: l.impaired.clone(),
                drifted: report.drift.iter().any(|f| match f {
                    Finding::LinkEndMissing { link, .. }
                    | Finding::SwitchPortDetached { link, .. } => *link == l.ends,
                    Finding::ImpairmentDrift { end, .. } => l.ends.contains(end),
                    _ => false,
                }),
            })
            .collect();
    Topology {
        networks,
        namespaces,
        attachments,
        links,
        drift: report.drift.iter().map(|f| f.to_string()).collect(),
    }
}

/// A session on the machine for a view that stays open.
pub struct Watch {
    host: Box<dyn crate::host::Host>,
}

impl Nsnet {
    pub fn watch(&self) -> Watch {
        Watch { host: self.host() }
    }

    /// `check` of the whole host, on the watch's session: the namespaces
    /// it opened stay open from one refresh to the next.
    pub fn check_watched(&self, state: &State, watch: &mut Watch) -> Result<Report> {
        let mut report = crate::check::check_where(state, |_| true, &mut *watch.host)?;
        self.check_beyond_kernel(state, true, &mut report);
        Ok(report)
    }
}

impl Watch {
    /// The counters of every interface nsnet made in a namespace of
    /// `state` (attachments and link ends).
    pub fn counters(&mut self, state: &State) -> Result<Vec<Counter>> {
        let mut wanted: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for net in state.networks.values() {
            for a in &net.attachments {
                if let NsRef::Named(n) = &a.namespace {
                    wanted.entry(n.clone()).or_default().push(a.ifname.clone());
                }
            }
        }
        for l in &state.links {
            for e in &l.ends {
                wanted
                    .entry(e.namespace.clone())
                    .or_default()
                    .push(e.ifname.clone());
            }
        }
        let mut out = Vec::new();
        for (ns, ifnames) in wanted {
            let target = Target::Ns(NsRef::Named(ns.clone()));
            // A namespace deleted by hand is drift, not a failed refresh.
            let Ok(all) = self.host.counters(&target) else {
                continue;
            };
            for (ifname, rx, tx) in all.into_iter().filter(|(n, ..)| ifnames.contains(n)) {
                out.push(Counter {
                    namespace: ns.clone(),
                    ifname,
                    rx_bytes: rx,
                    tx_bytes: tx,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lab::Endpoint;

    #[test]
    fn drift_is_marked_on_the_link_it_concerns() {
        let mut state = State::default();
        let end = |s: &str| s.parse::<Endpoint>().unwrap();
        state.links.push(crate::model::lab::Link {
            ends: [end("r1:eth1"), end("r2:eth1")],
            addresses: Default::default(),
            mtu: None,
            owner: None,
        });
        state.links.push(crate::model::lab::Link {
            ends: [end("r2:eth2"), end("r3:eth2")],
            addresses: Default::default(),
            mtu: None,
            owner: None,
        });
        let report = Report {
            drift: vec![Finding::LinkEndMissing {
                end: end("r1:eth1"),
                link: [end("r1:eth1"), end("r2:eth1")],
            }],
            warnings: vec![],
        };
        let t = topology(&state, &report);
        assert_eq!(t.namespaces.len(), 3);
        let drifted: Vec<bool> = t.links.iter().map(|l| l.drifted).collect();
        assert_eq!(drifted, [true, false]);
        assert_eq!(t.drift.len(), 1);
    }
}

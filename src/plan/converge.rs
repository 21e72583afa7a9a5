//! The pure half of `nsnet up` and `down`: the topology file against the
//! record. What the file no longer wants (or wants otherwise, or the
//! kernel lost) is removed; what it wants and the record lacks is listed
//! for creation. Facts about the kernel come in as values (`Damaged`, lab
//! `Facts`); `api::converge` gathers them and commits.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::attach::plan_disconnect;
use super::lab::LinkRequest;
use super::network::{bridge_name, gateway_for, plan_remove};
use super::{without_firewall, Op};
use crate::model::topology::{LabSpec, Outcome, Topology};
use crate::model::{
    names, Attachment, ConnectRequest, CreateRequest, Network, NsRef, Rejection, State,
};

type Result<T> = std::result::Result<T, Rejection>;

/// Whether a recorded network is what the request describes.
pub fn network_matches(net: &Network, req: &CreateRequest) -> bool {
    let bridge = match &req.lan {
        Some(_) => String::new(),
        None => match bridge_name(req) {
            Ok(b) => b,
            Err(_) => return false,
        },
    };
    let recorded: BTreeSet<_> = net.subnets.iter().map(|s| s.cidr).collect();
    if recorded != req.subnets.iter().copied().collect() {
        return false;
    }
    let gateways_match = net
        .subnets
        .iter()
        .all(|s| gateway_for(&s.cidr, &req.gateways).ok() == Some(s.gateway));
    gateways_match
        && net.bridge == bridge
        && net.internal == req.internal
        && net.gateway_mode == req.gateway_mode
        && net.gateway_mode_v6 == req.mode_v6()
        && net.icc == req.icc
        && net.trusted_interfaces == req.trusted_interfaces
        && net.isolate == req.isolate
        && net.mtu == req.mtu
        && net.dns == req.serves_dns()
        && net.dns_domain == req.dns_domain
        && lan_matches(net, req)
}

/// Whether a network's LAN part is what the request asks for (its host
/// access address is nsnet's pick: whether there is one is what matters).
fn lan_matches(net: &Network, req: &CreateRequest) -> bool {
    use crate::model::lan::{Lan, LanRequest};
    match (&net.lan, &req.lan) {
        (None, None) => true,
        (Some(Lan::HostDevice(d)), Some(LanRequest::HostDevice { device })) => d.device == *device,
        (
            Some(Lan::Macvlan(m)),
            Some(LanRequest::Macvlan {
                parent,
                mode,
                ip_ranges,
                host_access,
                probe_ms,
            }),
        ) => {
            m.parent == *parent
                && m.mode == *mode
                && m.ip_ranges == *ip_ranges
                && m.host_access.is_some() == *host_access
                && m.probe_ms == *probe_ms
        }
        _ => false,
    }
}

/// Whether a recorded attachment is what the request describes. Addresses
/// that the request leaves to IPAM match whatever was allocated.
pub fn attachment_matches(att: &Attachment, req: &ConnectRequest) -> bool {
    let mac = req.mac.as_ref().map(names::format_mac);
    let ips_match = req
        .ips
        .iter()
        .all(|ip| att.addresses.iter().any(|n| n.addr() == ip.addr));
    let ports_match = att.ports.len() == req.publish.len()
        && att
            .ports
            .iter()
            .zip(&req.publish)
            .all(|(have, want)| have.fulfils(want));
    att.ifname == req.ifname()
        && att.mac == mac
        && ports_match
        && ips_match
        && att.aliases == req.aliases
}

/// Objects of a file that the kernel no longer has as recorded.
#[derive(Default)]
pub struct Damaged {
    pub networks: BTreeSet<String>,
    /// (network, namespace)
    pub attachments: BTreeSet<(String, NsRef)>,
    /// nsnet's table is missing or not as recorded.
    pub firewall: bool,
    /// The file's links, routes and impairments the kernel lost: removed
    /// from the record, so that the file's lab plan makes them again.
    pub lab: crate::plan::lab::Removal,
}

/// Refuses a file whose objects exist but were made by someone else.
pub fn check_ownership(topo: &Topology, before: &State) -> Result<()> {
    let owner = Some(topo.owner.clone());
    for req in &topo.networks {
        if before
            .networks
            .get(&req.name)
            .is_some_and(|n| n.owner != owner)
        {
            return Err(Rejection::NotOwnedByFile {
                what: format!("network {}", req.name),
                owner: topo.owner.clone(),
            });
        }
    }
    for req in &topo.attachments {
        let theirs = before
            .networks
            .get(&req.network)
            .and_then(|n| n.attachment(&req.namespace))
            .is_some_and(|a| a.owner != owner);
        if theirs {
            return Err(Rejection::AttachmentNotOwnedByFile {
                namespace: req.namespace.to_string(),
                network: req.network.clone(),
                owner: topo.owner.clone(),
            });
        }
    }
    Ok(())
}

/// Step 1 of `up`: what the file no longer wants, or wants differently, or
/// what the kernel lost of it. Returns the state after the removals and
/// their steps.
pub fn plan_removals(
    topo: &Topology,
    before: &State,
    damaged: &Damaged,
    out: &mut Outcome,
) -> Result<(State, Vec<Op>)> {
    let owner = Some(topo.owner.clone());
    let mut mid = before.clone();
    let mut removals = Vec::new();
    for net in before.networks.values().filter(|n| n.owner == owner) {
        let wanted = topo.networks.iter().find(|r| r.name == net.name);
        let broken = damaged.networks.contains(&net.name);
        if broken || wanted.is_none_or(|r| !network_matches(net, r)) {
            let (next, ops) = plan_remove(&mid, &net.name, true)?;
            mid = next;
            removals.extend(without_firewall(ops));
            let verb = if wanted.is_some() {
                "recreate"
            } else {
                "remove"
            };
            out.changes.push(format!("{verb} network {}", net.name));
        }
    }
    let mut leaving: BTreeMap<String, Vec<NsRef>> = BTreeMap::new();
    for net in mid.networks.values() {
        for a in net.attachments.iter().filter(|a| a.owner == owner) {
            let wanted = topo
                .attachments
                .iter()
                .find(|r| r.network == net.name && r.namespace == a.namespace);
            let broken = damaged
                .attachments
                .contains(&(net.name.clone(), a.namespace.clone()));
            if broken || wanted.is_none_or(|r| !attachment_matches(a, r)) {
                leaving
                    .entry(net.name.clone())
                    .or_default()
                    .push(a.namespace.clone());
                let verb = if wanted.is_some() {
                    "reconnect"
                } else {
                    "disconnect"
                };
                out.changes.push(format!(
                    "{verb} namespace {} on network {}",
                    a.namespace, net.name
                ));
            }
        }
    }
    for (net, nss) in &leaving {
        let (next, ops) = plan_disconnect(&mid, net, nss)?;
        mid = next;
        removals.extend(without_firewall(ops));
    }
    for (ns, conf) in before
        .resolv_confs
        .iter()
        .filter(|(_, c)| Some(&c.owner) == owner.as_ref())
    {
        if topo.dns.get(ns) != Some(&conf.servers) {
            mid.resolv_confs.remove(ns);
            removals.push(Op::RemoveResolvConf {
                namespace: ns.clone(),
            });
            out.changes
                .push(format!("remove DNS servers of namespace {ns}"));
        }
    }
    removals.extend(Op::firewall(before, &mid));
    Ok((mid, removals))
}

/// What the file wants that `mid` lacks, in the order the file gives it.
pub struct Missing<'a> {
    pub networks: Vec<&'a CreateRequest>,
    pub attachments: Vec<&'a ConnectRequest>,
    pub dns: Vec<(&'a String, &'a Vec<IpAddr>)>,
}

pub fn missing<'a>(topo: &'a Topology, mid: &State) -> Missing<'a> {
    Missing {
        networks: topo
            .networks
            .iter()
            .filter(|r| !mid.networks.contains_key(&r.name))
            .collect(),
        attachments: topo
            .attachments
            .iter()
            .filter(|r| {
                mid.networks
                    .get(&r.network)
                    .is_none_or(|n| n.attachment(&r.namespace).is_none())
            })
            .collect(),
        dns: topo
            .dns
            .iter()
            .filter(|(ns, servers)| mid.resolv_confs.get(ns).map(|c| &c.servers) != Some(servers))
            .collect(),
    }
}

/// Whether a recorded link is the one the file asks for.
fn link_matches(have: &crate::model::lab::Link, want: &LinkRequest) -> bool {
    have.ends == want.resolved_ends() && have.addresses == want.addresses && have.mtu == want.mtu
}

/// Removes the lab objects of `owner` the file no longer wants (or wants
/// otherwise), from `state`, as one teardown; the steps, and the lines
/// that say so.
pub fn plan_lab_removals(
    lab: &LabSpec,
    owner: &str,
    state: &mut crate::model::State,
    changes: &mut Vec<String>,
) -> Result<Vec<Op>> {
    use crate::plan::lab::{plan_lab_removal, Removal};
    let mine = |o: &Option<String>| o.as_deref() == Some(owner);
    let mut r = Removal::default();
    for (e, rec) in &state.impairments {
        if mine(&rec.owner) && !lab.impairments.contains_key(e) {
            changes.push(format!("clear the impairment of {e}"));
            r.impairments.push(e.clone());
        }
    }
    for (ns, rec) in state.lab_namespaces.iter().filter(|(_, r)| mine(&r.owner)) {
        let want = lab.routers.get(ns).cloned().unwrap_or_default();
        for route in rec.routes.iter().filter(|x| !want.routes.contains(x)) {
            changes.push(format!("delete route {route} in {ns}"));
            r.routes.push((ns.clone(), route.clone()));
        }
        if rec.forward && !want.forward {
            changes.push(format!("stop forwarding in {ns}"));
            r.forward_off.push(ns.clone());
        }
    }
    for l in &state.links {
        if mine(&l.owner) && !lab.links.iter().any(|w| link_matches(l, w)) {
            changes.push(format!("delete link {} <-> {}", l.ends[0], l.ends[1]));
            r.links.push((l.ends[0].clone(), l.ends[1].clone()));
        }
    }
    plan_lab_removal(state, &r)
}

/// Makes what the file asks for and `state` lacks; `facts` describe the
/// namespaces as they will be once the file's attachments are made.
pub fn plan_lab_creations(
    lab: &LabSpec,
    owner: &str,
    state: &mut crate::model::State,
    facts: &crate::plan::lab::Facts,
    changes: &mut Vec<String>,
) -> Result<Vec<Op>> {
    use crate::plan::lab as plan;
    let mut ops = Vec::new();
    for want in &lab.links {
        if state.links.iter().any(|l| link_matches(l, want)) {
            continue;
        }
        let [a, b] = want.resolved_ends();
        changes.push(format!("link {a} <-> {b}"));
        let req = LinkRequest {
            impair: None,
            ..want.clone()
        };
        ops.extend(plan::plan_link_add(state, &req, facts)?);
    }
    let own = Some(owner.to_string());
    // A namespace the links or attachments above just planned exists by
    // the time the routers' steps run.
    let mut f = facts.clone();
    for ns in lab.routers.keys() {
        let known = state.lab_namespaces.contains_key(ns)
            || state
                .attachments_of(&crate::model::NsRef::Named(ns.clone()))
                .next()
                .is_some();
        f.entry(ns.clone()).or_default().exists |= known;
    }
    for (ns, r) in &lab.routers {
        if r.forward && !state.lab_namespaces.get(ns).is_some_and(|x| x.forward) {
            changes.push(format!("forward in {ns}"));
            ops.extend(plan::plan_forward(state, ns, true, own.clone(), &f)?);
        }
        for route in &r.routes {
            let have = state
                .lab_namespaces
                .get(ns)
                .is_some_and(|x| x.routes.contains(route));
            if !have {
                changes.push(format!("add route {route} in {ns}"));
                ops.extend(plan::plan_route_add(state, ns, route, own.clone(), &f)?);
            }
        }
    }
    for (end, imp) in &lab.impairments {
        if state.impairments.get(end).map(|r| &r.impairment) != Some(imp) {
            changes.push(format!("impair {end}: {imp}"));
            ops.extend(plan::plan_impair(
                state,
                end,
                Some(imp),
                own.clone(),
                facts,
            )?);
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::attach::{plan_connect, NsFacts};
    use crate::plan::network::{plan_create, HostFacts};

    fn req(name: &str, subnets: &[&str]) -> CreateRequest {
        CreateRequest::for_test(name, subnets)
    }

    #[test]
    fn a_network_matches_the_request_that_made_it() {
        let r = req("a", &["10.0.0.0/24", "fd00::/64"]);
        let (s, _) = plan_create(&State::default(), &r, &HostFacts::default()).unwrap();
        let net = s.networks["a"].clone();
        assert!(network_matches(&net, &r));
        assert!(!network_matches(&net, &req("a", &["10.0.0.0/24"])));
        assert!(!network_matches(
            &net,
            &CreateRequest {
                internal: true,
                ..r.clone()
            }
        ));
        assert!(!network_matches(
            &net,
            &CreateRequest {
                mtu: Some(1400),
                ..r.clone()
            }
        ));
        assert!(!network_matches(
            &net,
            &CreateRequest {
                gateways: vec!["10.0.0.9".parse().unwrap()],
                ..r.clone()
            }
        ));
        assert!(network_matches(
            &net,
            &CreateRequest {
                gateways: vec!["10.0.0.1".parse().unwrap()],
                ..r
            }
        ));
    }

    #[test]
    fn an_attachment_matches_unless_something_asked_for_differs() {
        let (s, _) = plan_create(
            &State::default(),
            &req("a", &["10.0.0.0/24"]),
            &HostFacts::default(),
        )
        .unwrap();
        let c = ConnectRequest {
            publish: vec!["8080:80".parse().unwrap()],
            ..ConnectRequest::new("a", NsRef::Named("x".into()))
        };
        let (s, _) = plan_connect(&s, &c, &NsFacts::default()).unwrap();
        let att = s.networks["a"].attachments[0].clone();
        assert!(attachment_matches(&att, &c));
        assert!(attachment_matches(
            &att,
            &ConnectRequest {
                ips: vec!["10.0.0.2".parse().unwrap()],
                ..c.clone()
            }
        ));
        assert!(!attachment_matches(
            &att,
            &ConnectRequest {
                ips: vec!["10.0.0.7".parse().unwrap()],
                ..c.clone()
            }
        ));
        assert!(!attachment_matches(
            &att,
            &ConnectRequest {
                publish: vec![],
                ..c.clone()
            }
        ));
        assert!(!attachment_matches(
            &att,
            &ConnectRequest {
                ifname: Some("eth1".into()),
                ..c.clone()
            }
        ));
        assert!(!attachment_matches(
            &att,
            &ConnectRequest {
                mac: Some([2, 0, 0, 0, 0, 9]),
                ..c
            }
        ));
    }
}

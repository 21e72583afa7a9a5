//! `nsnet up`, `down` and `gc`: making the host match a topology file, and
//! cleaning up after namespaces that vanished.
//!
//! Everything an `up` creates is marked with the file's path; later runs of
//! the same file change or remove only those objects, and never touch what
//! the command line or another file made. `up` runs in two journaled steps:
//! first whatever the file no longer wants goes (teardown semantics), then
//! what is missing is made (all or nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::attach::{self, plan_connect, plan_disconnect, ConnectRequest, DEFAULT_IFNAME};
use crate::error::{require_root, Error, Result};
use crate::ipam;
use crate::kernel::LiveKernel;
use crate::model::{Attachment, Network, ResolvConf};
use crate::netns::NsRef;
use crate::network::{self, bridge_name, parse_subnet, plan_create, plan_remove, CreateRequest};
use crate::plan::{self, Op};
use crate::ports::PortMapping;
use crate::topology::Topology;
use crate::{names, Mode, Nsnet};

/// What a command changed (or, with `--dry-run`, would change).
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub changes: Vec<String>,
    pub applied: bool,
}

/// Whether a recorded network is what the request describes.
fn network_matches(net: &Network, req: &CreateRequest) -> bool {
    let Ok(bridge) = bridge_name(req) else {
        return false;
    };
    let mut cidrs = Vec::new();
    for s in &req.subnets {
        match parse_subnet(s) {
            Ok(c) => cidrs.push(c),
            Err(_) => return false,
        }
    }
    let recorded: BTreeSet<_> = net.subnets.iter().map(|s| s.cidr).collect();
    if recorded != cidrs.iter().copied().collect() {
        return false;
    }
    let gateways_match = net.subnets.iter().all(|s| {
        let wanted = req
            .gateways
            .iter()
            .filter_map(|g| g.parse::<IpAddr>().ok())
            .find(|g| g.is_ipv4() == s.cidr.addr().is_ipv4())
            .or_else(|| ipam::default_gateway(&s.cidr).ok());
        wanted == Some(s.gateway)
    });
    gateways_match
        && net.bridge == bridge
        && net.internal == req.internal
        && net.masquerade == (!req.no_masquerade && !req.internal)
        && net.isolate != req.no_isolate
        && net.mtu == req.mtu
}

/// Whether a recorded attachment is what the request describes. Addresses
/// that the request leaves to IPAM match whatever was allocated.
fn attachment_matches(att: &Attachment, req: &ConnectRequest) -> bool {
    let ifname = req.ifname.as_deref().unwrap_or(DEFAULT_IFNAME);
    let mac = req
        .mac
        .as_deref()
        .map(|m| names::parse_mac(m).map(|m| names::format_mac(&m)));
    let mac_matches = match mac {
        None => att.mac.is_none(),
        Some(Ok(m)) => att.mac.as_deref() == Some(m.as_str()),
        Some(Err(_)) => false,
    };
    let ports: std::result::Result<Vec<PortMapping>, _> =
        req.publish.iter().map(|p| p.parse()).collect();
    let ips_match = req.ips.iter().all(|ip| {
        let addr = ip
            .parse::<ipnet::IpNet>()
            .map(|n| n.addr())
            .or_else(|_| ip.parse::<IpAddr>());
        addr.is_ok_and(|a| att.addresses.iter().any(|n| n.addr() == a))
    });
    att.ifname == ifname && mac_matches && ports.is_ok_and(|p| p == att.ports) && ips_match
}

/// Objects of a file that the kernel no longer has as recorded.
#[derive(Default)]
struct Damaged {
    networks: BTreeSet<String>,
    /// (network, namespace)
    attachments: BTreeSet<(String, String)>,
    /// nsnet's table is missing or not as recorded.
    firewall: bool,
}

/// Asks `check` about each network of the file: a damaged bridge or gateway
/// means the network is remade; a damaged attachment, that it is.
fn damaged_objects(state: &crate::model::State, owner: Option<&str>) -> Result<Damaged> {
    let mut out = Damaged::default();
    // A dry run by a user who may not read the kernel's state plans from
    // the record alone.
    if !nix::unistd::geteuid().is_root() {
        return Ok(out);
    }
    let owned = |n: &Network| owner.is_some() && n.owner.as_deref() == owner;
    if !state.networks.values().any(owned) {
        return Ok(out);
    }
    // One check for all of the file's networks: the firewall table is
    // listed once, not once per network.
    let report = crate::check::check_where(state, owned)?;
    out.firewall = report.drift.iter().any(|l| {
        l.starts_with("chain ") || l.starts_with("map ") || l.starts_with("nftables table")
    });
    for net in state.networks.values().filter(|n| owned(n)) {
        let network_prefix = format!("network {}: ", net.name);
        for line in &report.drift {
            if line.starts_with(&network_prefix) {
                out.networks.insert(net.name.clone());
            }
            for a in &net.attachments {
                if line.starts_with(&format!("network {}, namespace {}:", net.name, a.namespace)) {
                    out.attachments
                        .insert((net.name.clone(), a.namespace.to_string()));
                }
            }
        }
    }
    Ok(out)
}

fn without_firewall(ops: Vec<Op>) -> impl Iterator<Item = Op> {
    ops.into_iter()
        .filter(|o| !matches!(o, Op::Firewall { .. }))
}

impl Nsnet {
    /// Makes the host match `topo`, changing only what differs.
    pub fn up(&self, topo: &Topology, dry_run: bool) -> Result<Outcome> {
        if !dry_run {
            require_root("apply a topology")?;
        }
        let owner = Some(topo.owner.clone());
        let (lock, before) = self.begin()?;
        for req in &topo.networks {
            if let Some(n) = before.networks.get(&req.name) {
                if n.owner != owner {
                    return Err(Error::Conflict(format!(
                        "network {} exists and was not created by {}; remove it or rename it in the file",
                        req.name, topo.owner
                    )));
                }
            }
        }
        for req in &topo.attachments {
            let ns = NsRef::parse(&req.namespace)?;
            if let Some(a) = before
                .networks
                .get(&req.network)
                .and_then(|n| n.attachment(&ns))
            {
                if a.owner != owner {
                    return Err(Error::Conflict(format!(
                        "namespace {} is connected to network {} by someone else than {}",
                        req.namespace, req.network, topo.owner
                    )));
                }
            }
        }
        let mut out = Outcome::default();

        // What the kernel no longer has of the file's objects (a bridge or
        // veth deleted by hand, a namespace gone): remade, so that `up`
        // repairs as well as converges.
        let damaged = damaged_objects(&before, owner.as_deref())?;

        // 1. What the file no longer wants, or wants differently, goes.
        let mut mid = before.clone();
        let mut removals = Vec::new();
        for net in before.networks.values().filter(|n| n.owner == owner) {
            let wanted = topo.networks.iter().find(|r| r.name == net.name);
            let broken = damaged.networks.contains(&net.name);
            if broken || wanted.is_none_or(|r| !network_matches(net, r)) {
                let (next, ops) = plan_remove(&mid, &net.name, true)?;
                mid = next;
                removals.extend(without_firewall(ops));
                out.changes.push(format!(
                    "{} network {}",
                    if wanted.is_some() {
                        "recreate"
                    } else {
                        "remove"
                    },
                    net.name
                ));
            }
        }
        let mut leaving: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for net in mid.networks.values() {
            for a in net.attachments.iter().filter(|a| a.owner == owner) {
                let wanted = topo.attachments.iter().find(|r| {
                    r.network == net.name
                        && NsRef::parse(&r.namespace).ok().as_ref() == Some(&a.namespace)
                });
                let broken = damaged
                    .attachments
                    .contains(&(net.name.clone(), a.namespace.to_string()));
                if broken || wanted.is_none_or(|r| !attachment_matches(a, r)) {
                    leaving
                        .entry(net.name.clone())
                        .or_default()
                        .push(a.namespace.to_string());
                    out.changes.push(format!(
                        "{} namespace {} on network {}",
                        if wanted.is_some() {
                            "reconnect"
                        } else {
                            "disconnect"
                        },
                        a.namespace,
                        net.name
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
        removals.extend(Op::firewall(&before, &mid));

        // What is missing, in the order the file gives it.
        let missing_networks: Vec<&CreateRequest> = topo
            .networks
            .iter()
            .filter(|r| !mid.networks.contains_key(&r.name))
            .collect();
        let missing_attachments: Vec<&ConnectRequest> = topo
            .attachments
            .iter()
            .filter(|r| {
                let ns = NsRef::parse(&r.namespace).ok();
                mid.networks
                    .get(&r.network)
                    .is_none_or(|n| ns.as_ref().is_none_or(|ns| n.attachment(ns).is_none()))
            })
            .collect();
        let missing_dns: Vec<(&String, &Vec<IpAddr>)> = topo
            .dns
            .iter()
            .filter(|(ns, servers)| mid.resolv_confs.get(*ns).map(|c| &c.servers) != Some(servers))
            .collect();
        for r in &missing_networks {
            out.changes.push(format!("create network {}", r.name));
        }
        for r in &missing_attachments {
            out.changes.push(format!(
                "connect namespace {} to network {}",
                r.namespace, r.network
            ));
        }
        for (ns, _) in &missing_dns {
            if !before.resolv_confs.contains_key(*ns) && crate::resolv::path(ns).exists() {
                return Err(Error::Conflict(format!(
                    "{} exists and was not written by nsnet",
                    crate::resolv::path(ns).display()
                )));
            }
            out.changes
                .push(format!("write DNS servers of namespace {ns}"));
        }
        if damaged.firewall {
            out.changes
                .push("repair the nftables table inet nsnet".into());
        }
        if dry_run || out.changes.is_empty() {
            return Ok(out);
        }

        let mut kernel = LiveKernel::new();
        if !removals.is_empty() && mid != before {
            self.commit(
                &lock,
                &before,
                &mid,
                &removals,
                Mode::KeepGoing,
                &mut kernel,
            )?;
        }

        // 2. Plan the creations against the kernel as it is now.
        let mut after = mid.clone();
        let mut ops = Vec::new();
        for req in missing_networks {
            let facts = network::gather_facts(&mut kernel, req)?;
            let (next, more) = plan_create(&after, req, &facts)?;
            after = next;
            after
                .networks
                .get_mut(&req.name)
                .expect("just planned")
                .owner = owner.clone();
            ops.extend(without_firewall(more));
        }
        let mut planned: BTreeMap<NsRef, Vec<(String, Vec<bool>)>> = BTreeMap::new();
        for req in missing_attachments {
            let ifname = req.ifname.as_deref().unwrap_or(DEFAULT_IFNAME);
            let ns = NsRef::parse(&req.namespace)?;
            let mut facts = match planned.get(&ns) {
                // Not in the kernel yet: its earlier attachment is planned in
                // this very run.
                Some(_) => attach::NsFacts {
                    exists: true,
                    ..Default::default()
                },
                None => attach::gather_facts(
                    &mut kernel,
                    after.networks.get(&req.network),
                    &req.namespace,
                    ifname,
                )?,
            };
            for (ifn, families) in planned.get(&ns).into_iter().flatten() {
                facts.ifnames.push(ifn.clone());
                facts.default_routes.extend(families);
            }
            let (next, more) = plan_connect(&after, req, &facts)?;
            after = next;
            let net = after
                .networks
                .get_mut(&req.network)
                .expect("planned against it");
            let families: Vec<bool> = if net.internal {
                vec![]
            } else {
                net.subnets
                    .iter()
                    .map(|s| s.cidr.addr().is_ipv4())
                    .collect()
            };
            if let Some(a) = net.attachments.iter_mut().find(|a| a.namespace == ns) {
                a.owner = owner.clone();
            }
            planned
                .entry(ns)
                .or_default()
                .push((ifname.to_string(), families));
            ops.extend(without_firewall(more));
        }
        for (ns, servers) in missing_dns {
            ops.push(Op::WriteResolvConf {
                namespace: ns.clone(),
                servers: servers.clone(),
            });
            after.resolv_confs.insert(
                ns.clone(),
                ResolvConf {
                    servers: servers.clone(),
                    owner: topo.owner.clone(),
                },
            );
        }
        let mut ops = plan::batch_namespaces(ops);
        if damaged.firewall {
            // The whole table, whatever the live one looks like.
            let table = crate::firewall::render(&after);
            ops.push(Op::Firewall {
                transaction: table.clone(),
                previous: crate::firewall::render(&mid),
                after: Box::new(after.clone()),
                before: Box::new(mid.clone()),
            });
        } else {
            ops.extend(Op::firewall(&mid, &after));
        }
        plan::heal_firewall(&mut ops, &mid).map_err(|e| Error::Kernel(e.into()))?;
        kernel.set_progress(ops.len());
        self.commit(&lock, &mid, &after, &ops, Mode::AllOrNothing, &mut kernel)?;
        out.applied = true;
        Ok(out)
    }

    /// Removes everything an `up` of the file `owner` created.
    pub fn down(&self, owner: &str) -> Result<Outcome> {
        require_root("remove a topology")?;
        let owner = Some(owner.to_string());
        let (lock, before) = self.begin()?;
        let mut after = before.clone();
        let mut ops = Vec::new();
        let mut out = Outcome::default();
        for net in before.networks.values() {
            if net.owner == owner {
                let (next, more) = plan_remove(&after, &net.name, true)?;
                after = next;
                ops.extend(without_firewall(more));
                out.changes.push(format!("remove network {}", net.name));
            } else {
                let nss: Vec<String> = net
                    .attachments
                    .iter()
                    .filter(|a| a.owner == owner)
                    .map(|a| a.namespace.to_string())
                    .collect();
                if !nss.is_empty() {
                    let (next, more) = plan_disconnect(&after, &net.name, &nss)?;
                    after = next;
                    ops.extend(without_firewall(more));
                    out.changes.push(format!(
                        "disconnect {} from network {}",
                        nss.join(", "),
                        net.name
                    ));
                }
            }
        }
        for (ns, conf) in &before.resolv_confs {
            if Some(&conf.owner) == owner.as_ref() {
                after.resolv_confs.remove(ns);
                ops.push(Op::RemoveResolvConf {
                    namespace: ns.clone(),
                });
                out.changes
                    .push(format!("remove DNS servers of namespace {ns}"));
            }
        }
        if out.changes.is_empty() {
            return Ok(out);
        }
        // Published ports go first.
        if let Some(fw) = Op::firewall(&before, &after) {
            ops.insert(0, fw);
        }
        let mut kernel = LiveKernel::new();
        kernel.set_progress(ops.len());
        self.commit(&lock, &before, &after, &ops, Mode::KeepGoing, &mut kernel)?;
        out.applied = true;
        Ok(out)
    }

    /// Removes attachments (with their leases and published ports) whose
    /// namespace no longer exists: deleted with `ip netns del`, or its
    /// process gone.
    pub fn gc(&self) -> Result<Outcome> {
        require_root("collect garbage")?;
        let (lock, before) = self.begin()?;
        let mut after = before.clone();
        let mut ops = Vec::new();
        let mut out = Outcome::default();
        for net in before.networks.values() {
            let gone: Vec<String> = net
                .attachments
                .iter()
                .filter(|a| matches!(a.namespace.open(), Err(crate::netns::Error::NotFound(_))))
                .map(|a| a.namespace.to_string())
                .collect();
            if gone.is_empty() {
                continue;
            }
            let (next, more) = plan_disconnect(&after, &net.name, &gone)?;
            after = next;
            ops.extend(without_firewall(more));
            for ns in gone {
                out.changes.push(format!(
                    "forget namespace {ns} on network {} (it no longer exists)",
                    net.name
                ));
            }
        }
        if out.changes.is_empty() {
            return Ok(out);
        }
        if let Some(fw) = Op::firewall(&before, &after) {
            ops.insert(0, fw);
        }
        self.commit(
            &lock,
            &before,
            &after,
            &ops,
            Mode::KeepGoing,
            &mut LiveKernel::new(),
        )?;
        out.applied = true;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;
    use crate::network::HostFacts;

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
                gateways: vec!["10.0.0.9".into()],
                ..r.clone()
            }
        ));
        assert!(network_matches(
            &net,
            &CreateRequest {
                gateways: vec!["10.0.0.1".into()],
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
            network: "a".into(),
            namespace: "x".into(),
            publish: vec!["8080:80".into()],
            ..Default::default()
        };
        let (s, _) = plan_connect(&s, &c, &attach::NsFacts::default()).unwrap();
        let att = s.networks["a"].attachments[0].clone();
        assert!(attachment_matches(&att, &c));
        assert!(attachment_matches(
            &att,
            &ConnectRequest {
                ips: vec!["10.0.0.2".into()],
                ..c.clone()
            }
        ));
        assert!(!attachment_matches(
            &att,
            &ConnectRequest {
                ips: vec!["10.0.0.7".into()],
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
                mac: Some("02:00:00:00:00:09".into()),
                ..c
            }
        ));
    }
}

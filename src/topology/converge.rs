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

use super::Topology;
use crate::api::facts;
use crate::api::{require_root, Mode, Nsnet, Result};
use crate::apply::LiveKernel;
use crate::check::{self, LiveProbe, Probe};
use crate::kernel::resolv;
use crate::model::{
    names, Attachment, ConnectRequest, CreateRequest, Network, NsRef, Rejection, ResolvConf, State,
};
use crate::plan::attach::{plan_connect, plan_disconnect, NsFacts};
use crate::plan::network::{bridge_name, gateway_for, plan_create, plan_remove};
use crate::plan::{self, without_firewall, Op};

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
        && net.dns == req.dns
        && net.dns_domain == req.dns_domain
}

/// Whether a recorded attachment is what the request describes. Addresses
/// that the request leaves to IPAM match whatever was allocated.
fn attachment_matches(att: &Attachment, req: &ConnectRequest) -> bool {
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
struct Damaged {
    networks: BTreeSet<String>,
    /// (network, namespace)
    attachments: BTreeSet<(String, NsRef)>,
    /// nsnet's table is missing or not as recorded.
    firewall: bool,
    /// The file's links, routes and impairments the kernel lost: removed
    /// from the record, so that the file's lab plan makes them again.
    lab: crate::plan::lab::Removal,
}

/// Asks `check` about each network of the file: a damaged bridge or gateway
/// means the network is remade; a damaged attachment, that it is.
fn damaged_objects(state: &State, owner: Option<&str>, probe: &mut dyn Probe) -> Result<Damaged> {
    let mut out = Damaged::default();
    // A dry run by a user who may not read the kernel's state plans from
    // the record alone.
    if !nix::unistd::geteuid().is_root() {
        return Ok(out);
    }
    let owned = |n: &Network| owner.is_some() && n.owner.as_deref() == owner;
    let mine = |o: &Option<String>| owner.is_some() && o.as_deref() == owner;
    let owns_lab = state.links.iter().any(|l| mine(&l.owner))
        || state.lab_namespaces.values().any(|r| mine(&r.owner))
        || state.impairments.values().any(|r| mine(&r.owner));
    if !state.networks.values().any(owned) && !owns_lab {
        return Ok(out);
    }
    // One check for all of the file's networks: the firewall table is
    // listed once, not once per network.
    let report = check::check_where(state, owned, probe)?;
    out.firewall = report.firewall_damaged();
    for finding in &report.drift {
        lab_damage(state, finding, &mine, &mut out.lab);
        let Some(net) = finding.network() else {
            continue;
        };
        match finding.namespace() {
            Some(ns) => out.attachments.insert((net.to_string(), ns.clone())),
            None => out.networks.insert(net.to_string()),
        };
    }
    Ok(out)
}

/// Adds a damaged lab object of the file to `lab`.
fn lab_damage(
    state: &State,
    finding: &check::Finding,
    mine: &dyn Fn(&Option<String>) -> bool,
    lab: &mut crate::plan::lab::Removal,
) {
    use check::Finding;
    match finding {
        Finding::LinkEndMissing { link: [a, b], .. } => {
            let owned = state.links.iter().any(|l| l.joins(a, b) && mine(&l.owner));
            if owned && !lab.links.contains(&(a.clone(), b.clone())) {
                lab.links.push((a.clone(), b.clone()));
            }
        }
        Finding::RouteMissing { namespace, route }
            if state
                .lab_namespaces
                .get(namespace)
                .is_some_and(|r| mine(&r.owner)) =>
        {
            lab.routes.push((namespace.clone(), route.clone()));
        }
        Finding::ImpairmentDrift { end, .. }
            if state.impairments.get(end).is_some_and(|r| mine(&r.owner)) =>
        {
            lab.impairments.push(end.clone());
        }
        _ => {}
    }
}

/// Refuses a file whose objects exist but were made by someone else.
fn check_ownership(topo: &Topology, before: &State) -> Result<()> {
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
            }
            .into());
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
            }
            .into());
        }
    }
    Ok(())
}

/// Step 1 of `up`: what the file no longer wants, or wants differently, or
/// what the kernel lost of it. Returns the state after the removals and
/// their steps.
fn plan_removals(
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
struct Missing<'a> {
    networks: Vec<&'a CreateRequest>,
    attachments: Vec<&'a ConnectRequest>,
    dns: Vec<(&'a String, &'a Vec<IpAddr>)>,
}

fn missing<'a>(topo: &'a Topology, mid: &State) -> Missing<'a> {
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

/// Lists the creations in `out`; refuses a resolv.conf that is not ours.
fn describe_missing(
    m: &Missing,
    before: &State,
    probe: &mut dyn Probe,
    out: &mut Outcome,
) -> Result<()> {
    for r in &m.networks {
        out.changes.push(format!("create network {}", r.name));
    }
    for r in &m.attachments {
        out.changes.push(format!(
            "connect namespace {} to network {}",
            r.namespace, r.network
        ));
    }
    for (ns, _) in &m.dns {
        if !before.resolv_confs.contains_key(ns) && probe.file_exists(&resolv::path(ns)) {
            return Err(Rejection::ForeignFile {
                path: resolv::path(ns).display().to_string(),
            }
            .into());
        }
        out.changes
            .push(format!("write DNS servers of namespace {ns}"));
    }
    Ok(())
}

/// Step 2 of `up`: the creations, planned against the kernel as it is
/// after step 1. Returns the state to record and the steps.
fn plan_creations(
    topo: &Topology,
    mid: &State,
    m: Missing,
    kernel: &mut LiveKernel,
) -> Result<(State, Vec<Op>)> {
    let owner = Some(topo.owner.clone());
    let mut after = mid.clone();
    let mut ops = Vec::new();
    for req in m.networks {
        let facts = facts::host_facts(
            &mut LiveProbe {
                kernel: &mut *kernel,
            },
            req,
        )?;
        let (next, more) = plan_create(&after, req, &facts)?;
        after = next;
        after
            .networks
            .get_mut(&req.name)
            .expect("just planned")
            .owner = owner.clone();
        ops.extend(without_firewall(more));
    }
    // Namespaces planned in this very run, not in the kernel yet: their
    // interfaces and default-route families.
    let mut planned: BTreeMap<NsRef, Vec<(String, Vec<bool>)>> = BTreeMap::new();
    for req in m.attachments {
        let mut facts = match planned.get(&req.namespace) {
            Some(_) => NsFacts {
                exists: true,
                bridge_netfilter: after.networks.get(&req.network).is_some_and(|n| {
                    facts::bridge_netfilter(
                        &mut LiveProbe {
                            kernel: &mut *kernel,
                        },
                        n,
                    )
                }),
                host_listeners: facts::host_listeners(
                    &mut LiveProbe {
                        kernel: &mut *kernel,
                    },
                    req,
                )?,
                ..Default::default()
            },
            None => facts::namespace_facts(
                &mut LiveProbe {
                    kernel: &mut *kernel,
                },
                after.networks.get(&req.network),
                req,
            )?,
        };
        for (ifn, families) in planned.get(&req.namespace).into_iter().flatten() {
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
        if let Some(a) = net.attachments.of_namespace_mut(&req.namespace) {
            std::sync::Arc::make_mut(a).owner = owner.clone();
        }
        planned
            .entry(req.namespace.clone())
            .or_default()
            .push((req.ifname().to_string(), families));
        ops.extend(without_firewall(more));
    }
    for (ns, servers) in m.dns {
        ops.push(Op::WriteResolvConf {
            namespace: ns.clone(),
            servers: servers.clone(),
            search: Vec::new(),
        });
        after.resolv_confs.insert(
            ns.clone(),
            ResolvConf {
                servers: servers.clone(),
                owner: topo.owner.clone(),
                search: Vec::new(),
            }
            .into(),
        );
    }
    Ok((after, plan::batch_namespaces(ops)))
}

/// What lab plans need to know of the file's namespaces: the kernel's
/// view, where a namespace the file's attachments make (or the record
/// has) counts as existing.
fn planned_lab_facts(
    topo: &Topology,
    before: &State,
    state: &State,
    kernel: &mut LiveKernel,
    dry_run: bool,
) -> Result<crate::plan::lab::Facts> {
    // What this up's removals delete is gone by the time the creations
    // run: the ends of the links it removes, the namespaces it deletes.
    let removed_ends: Vec<&crate::model::lab::Endpoint> = before
        .links
        .iter()
        .filter(|l| !state.links.contains(l))
        .flat_map(|l| l.ends.iter())
        .collect();
    let deleted = |ns: &str| {
        before.lab_namespaces.get(ns).is_some_and(|r| r.created)
            && !state.lab_namespaces.contains_key(ns)
            && state
                .attachments_of(&NsRef::Named(ns.to_string()))
                .next()
                .is_none()
    };
    let lab = &topo.lab;
    let names: BTreeSet<&str> = lab
        .links
        .iter()
        .flat_map(|l| l.ends.iter().map(|e| e.namespace.as_str()))
        .chain(lab.routers.keys().map(String::as_str))
        .chain(lab.impairments.keys().map(|e| e.namespace.as_str()))
        .collect();
    let mut facts = crate::plan::lab::Facts::new();
    for ns in names {
        let mut f = if dry_run && !nix::unistd::geteuid().is_root() {
            crate::plan::lab::LabNsFacts::default()
        } else {
            crate::api::lab::lab_facts(
                &mut LiveProbe {
                    kernel: &mut *kernel,
                },
                [ns],
            )?
            .remove(ns)
            .unwrap_or_default()
        };
        f.ifnames.retain(|i| {
            !removed_ends
                .iter()
                .any(|e| e.namespace == ns && e.ifname == *i)
        });
        if deleted(ns) {
            f = crate::plan::lab::LabNsFacts::default();
        }
        let named = NsRef::Named(ns.to_string());
        f.exists |= topo.attachments.iter().any(|a| a.namespace == named)
            || state.attachments_of(&named).next().is_some()
            || state.lab_namespaces.contains_key(ns);
        facts.insert(ns.to_string(), f);
    }
    Ok(facts)
}

impl Nsnet {
    /// Makes the host match `topo`, changing only what differs.
    pub fn up(&self, topo: &Topology, dry_run: bool) -> Result<Outcome> {
        if !dry_run {
            require_root("apply a topology")?;
        }
        let (lock, before) = self.begin()?;
        check_ownership(topo, &before)?;
        let mut out = Outcome::default();
        let mut kernel = LiveKernel::new();
        // What the kernel no longer has of the file's objects (a bridge or
        // veth deleted by hand, a namespace gone): remade, so that `up`
        // repairs as well as converges.
        let damaged = damaged_objects(
            &before,
            Some(&topo.owner),
            &mut LiveProbe {
                kernel: &mut kernel,
            },
        )?;
        let (mut mid, mut removals) = plan_removals(topo, &before, &damaged, &mut out)?;
        // What the kernel lost of the file's lab goes from the record: the
        // lab plan below makes it again.
        removals.extend(crate::plan::lab::plan_lab_removal(&mut mid, &damaged.lab)?);
        removals.extend(super::lab::plan_removals(
            &topo.lab,
            &topo.owner,
            &mut mid,
            &mut out.changes,
        )?);
        let m = missing(topo, &mid);
        describe_missing(
            &m,
            &before,
            &mut LiveProbe {
                kernel: &mut kernel,
            },
            &mut out,
        )?;
        let lab_facts = planned_lab_facts(topo, &before, &mid, &mut kernel, dry_run)?;
        super::lab::plan_creations(
            &topo.lab,
            &topo.owner,
            &mut mid.clone(),
            &lab_facts,
            &mut out.changes,
        )?;
        if damaged.firewall {
            out.changes
                .push("repair the nftables table inet nsnet".into());
        }
        if dry_run || out.changes.is_empty() {
            return Ok(out);
        }
        // Recorded even without steps: the journal of the next commit is a
        // change from the recorded state.
        if mid != before {
            self.commit(
                &lock,
                &before,
                &mid,
                &removals,
                Mode::KeepGoing,
                &mut kernel,
            )?;
        }
        let (mut after, mut ops) = plan_creations(topo, &mid, m, &mut kernel)?;
        // Links, routers and impairments, once the namespaces of the
        // attachments are planned (the lines were listed above).
        ops.extend(super::lab::plan_creations(
            &topo.lab,
            &topo.owner,
            &mut after,
            &lab_facts,
            &mut Vec::new(),
        )?);
        if damaged.firewall {
            // The whole table, whatever the live one looks like.
            ops.push(Op::whole_firewall(&mid, &after));
        } else {
            ops.extend(Op::firewall(&mid, &after));
        }
        crate::api::heal_firewall(
            &mut ops,
            &mid,
            &mut LiveProbe {
                kernel: &mut kernel,
            },
        )?;
        kernel.set_progress(ops.len());
        self.commit(&lock, &mid, &after, &ops, Mode::AllOrNothing, &mut kernel)?;
        out.applied = true;
        Ok(out)
    }

    /// Removes everything an `up` of the file `owner` created.
    pub fn down(&self, owner: &str) -> Result<Outcome> {
        require_root("remove a topology")?;
        let (lock, before) = self.begin()?;
        let mut after = before.clone();
        let mut out = Outcome::default();
        // The file's links, routes and impairments first: an empty lab
        // wants none of them.
        let mut ops = super::lab::plan_removals(
            &super::LabSpec::default(),
            owner,
            &mut after,
            &mut out.changes,
        )?;
        let owner = Some(owner.to_string());
        for net in before.networks.values() {
            if net.owner == owner {
                let (next, more) = plan_remove(&after, &net.name, true)?;
                after = next;
                ops.extend(without_firewall(more));
                // The same lines as `up` listed, in reverse: what goes with
                // the network is named too.
                for a in &net.attachments {
                    out.changes.push(format!(
                        "disconnect namespace {} from network {}",
                        a.namespace, net.name
                    ));
                }
                out.changes.push(format!("remove network {}", net.name));
                continue;
            }
            let nss: Vec<NsRef> = net
                .attachments
                .iter()
                .filter(|a| a.owner == owner)
                .map(|a| a.namespace.clone())
                .collect();
            if !nss.is_empty() {
                let (next, more) = plan_disconnect(&after, &net.name, &nss)?;
                after = next;
                ops.extend(without_firewall(more));
                let list: Vec<String> = nss.iter().map(|n| n.to_string()).collect();
                out.changes.push(format!(
                    "disconnect {} from network {}",
                    list.join(", "),
                    net.name
                ));
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
        self.tear_down(&lock, &before, &after, ops, out)
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
        let mut kernel = LiveKernel::new();
        let mut probe = LiveProbe {
            kernel: &mut kernel,
        };
        for net in before.networks.values() {
            let gone: Vec<NsRef> = net
                .attachments
                .iter()
                .filter(|a| matches!(probe.namespace_exists(&a.namespace), Ok(false)))
                .map(|a| a.namespace.clone())
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
        // Links with an end in a namespace that is gone.
        let mut removal = crate::plan::lab::Removal::default();
        for l in &before.links {
            let gone = l.ends.iter().any(|e| {
                matches!(
                    probe.namespace_exists(&NsRef::Named(e.namespace.clone())),
                    Ok(false)
                )
            });
            if gone {
                out.changes.push(format!(
                    "forget link {} <-> {} (a namespace of it no longer exists)",
                    l.ends[0], l.ends[1]
                ));
                removal.links.push((l.ends[0].clone(), l.ends[1].clone()));
            }
        }
        ops.extend(crate::plan::lab::plan_lab_removal(&mut after, &removal)?);
        self.tear_down(&lock, &before, &after, ops, out)
    }

    /// Commits a teardown of merged plans, with one firewall step first so
    /// that published ports go before their attachments.
    fn tear_down(
        &self,
        lock: &crate::store::Lock,
        before: &State,
        after: &State,
        mut ops: Vec<Op>,
        mut out: Outcome,
    ) -> Result<Outcome> {
        if out.changes.is_empty() {
            return Ok(out);
        }
        if let Some(fw) = Op::firewall(before, after) {
            ops.insert(0, fw);
        }
        let mut kernel = LiveKernel::new();
        kernel.set_progress(ops.len());
        self.commit(lock, before, after, &ops, Mode::KeepGoing, &mut kernel)?;
        out.applied = true;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::network::HostFacts;

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

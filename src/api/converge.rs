//! `nsnet up`, `down` and `gc`: making the host match a topology file, and
//! cleaning up after namespaces that vanished.
//!
//! Everything an `up` creates is marked with the file's path; later runs of
//! the same file change or remove only those objects, and never touch what
//! the command line or another file made. `up` runs in two journaled steps:
//! first whatever the file no longer wants goes (teardown semantics), then
//! what is missing is made (all or nothing).

use std::collections::{BTreeMap, BTreeSet};

use super::{facts, Mode, Nsnet, Result};
use crate::check;
use crate::host::{Host, Probe};
use crate::kernel::resolv;
use crate::model::topology::{LabSpec, Outcome, Topology};
use crate::model::{Network, NsRef, Rejection, ResolvConf, State};
use crate::plan::attach::{plan_connect, plan_disconnect, NsFacts};
use crate::plan::converge::{
    check_ownership, missing, plan_lab_creations, plan_lab_removals, plan_removals, Damaged,
    Missing,
};
use crate::plan::network::{plan_create, plan_remove};
use crate::plan::{self, without_firewall, Op};

/// Asks `check` about each network of the file: a damaged bridge or gateway
/// means the network is remade; a damaged attachment, that it is.
fn damaged_objects(
    state: &State,
    owner: Option<&str>,
    probe: &mut dyn Probe,
    privileged: bool,
) -> Result<Damaged> {
    let mut out = Damaged::default();
    // A dry run by a user who may not read the kernel's state plans from
    // the record alone.
    if !privileged {
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
        Finding::LinkEndMissing { link: [a, b], .. }
        | Finding::SwitchPortDetached { link: [a, b], .. } => {
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
    host: &mut dyn Host,
) -> Result<(State, Vec<Op>)> {
    let owner = Some(topo.owner.clone());
    let mut after = mid.clone();
    let mut ops = Vec::new();
    for req in m.networks {
        let facts = facts::host_facts(&mut *host, req)?;
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
    // One probe of each LAN for all the file's connects: one wait.
    let probed = facts::lan_probes(&mut *host, &after, m.attachments.iter().copied())?;
    for req in m.attachments {
        let shared = probed.get(&req.network);
        let mut facts = match planned.get(&req.namespace) {
            Some(_) => NsFacts {
                exists: true,
                bridge_netfilter: after
                    .networks
                    .get(&req.network)
                    .is_some_and(|n| facts::bridge_netfilter(&mut *host, n)),
                host_listeners: facts::host_listeners(&mut *host, req)?,
                ..facts::lan_facts(&mut *host, after.networks.get(&req.network), req, shared)?
            },
            None => {
                facts::namespace_facts(&mut *host, after.networks.get(&req.network), req, shared)?
            }
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
    host: &mut dyn Host,
    privileged: bool,
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
        .flat_map(|l| l.ends.iter().map(|e| e.namespace()))
        .chain(lab.routers.keys().map(String::as_str))
        .chain(lab.impairments.keys().map(|e| e.namespace.as_str()))
        .collect();
    let mut facts = crate::plan::lab::Facts::new();
    for ns in names {
        let mut f = if !privileged {
            crate::plan::lab::LabNsFacts::default()
        } else {
            super::lab::lab_facts(&mut *host, [ns])?
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
            self.require_root("apply a topology")?;
        }
        let (lock, before) = self.begin()?;
        check_ownership(topo, &before)?;
        let mut out = Outcome::default();
        let mut host = self.host();
        // What the kernel no longer has of the file's objects (a bridge or
        // veth deleted by hand, a namespace gone): remade, so that `up`
        // repairs as well as converges.
        let privileged = self.machine.privileged();
        let damaged = damaged_objects(&before, Some(&topo.owner), &mut *host, privileged)?;
        let (mut mid, mut removals) = plan_removals(topo, &before, &damaged, &mut out)?;
        // What the kernel lost of the file's lab goes from the record: the
        // lab plan below makes it again.
        removals.extend(crate::plan::lab::plan_lab_removal(&mut mid, &damaged.lab)?);
        removals.extend(plan_lab_removals(
            &topo.lab,
            &topo.owner,
            &mut mid,
            &mut out.changes,
        )?);
        let m = missing(topo, &mid);
        describe_missing(&m, &before, &mut *host, &mut out)?;
        let lab_facts = planned_lab_facts(topo, &before, &mid, &mut *host, privileged)?;
        plan_lab_creations(
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
        // Processes of the file's nodes: the nodes made now get their
        // `exec` commands; `run` commands that do not run are started.
        let procs = self.process_changes(topo);
        if dry_run || out.changes.is_empty() {
            // Also with nothing to start: a process whose record was lost
            // is recorded again.
            if !dry_run && !topo.lab.processes.is_empty() {
                self.converge_processes(topo, &BTreeSet::new())?;
                out.applied = !procs.is_empty();
            }
            out.changes.extend(procs);
            return Ok(out);
        }
        let fresh: BTreeSet<String> = topo
            .lab
            .processes
            .keys()
            .filter(|n| !self.namespace_exists(&NsRef::Named((*n).clone())))
            .cloned()
            .collect();
        // Recorded even without steps: the journal of the next commit is a
        // change from the recorded state.
        if mid != before {
            self.commit(&lock, &before, &mid, &removals, Mode::KeepGoing, &mut *host)?;
        }
        let (mut after, mut ops) = plan_creations(topo, &mid, m, &mut *host)?;
        // Links, routers and impairments, once the namespaces of the
        // attachments are planned (the lines were listed above).
        ops.extend(plan_lab_creations(
            &topo.lab,
            &topo.owner,
            &mut after,
            &lab_facts,
            &mut Vec::new(),
        )?);
        // The links' namespaces too are made in parallel, with the
        // attachments'.
        let mut ops = plan::batch_namespaces(ops);
        if damaged.firewall {
            // The whole table, whatever the live one looks like.
            ops.push(Op::whole_firewall(&mid, &after));
        } else {
            ops.extend(Op::firewall(&mid, &after));
        }
        super::heal_firewall(&mut ops, &mid, &mut *host)?;
        host.set_progress(ops.len());
        self.commit(&lock, &mid, &after, &ops, Mode::AllOrNothing, &mut *host)?;
        out.applied = true;
        out.changes.extend(procs);
        self.converge_processes(topo, &fresh)?;
        Ok(out)
    }

    /// Removes everything an `up` of the file `owner` created.
    pub fn down(&self, owner: &str) -> Result<Outcome> {
        self.require_root("remove a topology")?;
        let (lock, before) = self.begin()?;
        let mut after = before.clone();
        let mut out = Outcome::default();
        // Its processes, while their nodes are there.
        self.stop_file_processes(owner, &mut out)?;
        // The file's links, routes and impairments first: an empty lab
        // wants none of them.
        let mut ops = plan_lab_removals(&LabSpec::default(), owner, &mut after, &mut out.changes)?;
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
        self.require_root("collect garbage")?;
        let (lock, before) = self.begin()?;
        let mut after = before.clone();
        let mut ops = Vec::new();
        let mut out = Outcome::default();
        let mut host = self.host();
        let probe = &mut *host;
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
        self.forget_gone_nodes(&mut out);
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
        let mut host = self.host();
        host.set_progress(ops.len());
        self.commit(lock, before, after, &ops, Mode::KeepGoing, &mut *host)?;
        out.applied = true;
        Ok(out)
    }
}

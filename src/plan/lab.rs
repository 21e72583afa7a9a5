//! Planning lab objects: point-to-point links, forwarding and static
//! routes in namespaces, and impairments. Pure over the record and the
//! facts gathered about the namespaces involved; every plan also records
//! its objects in the state it returns.

use std::collections::BTreeMap;

use super::{Op, Target};
use crate::model::lab::{
    Endpoint, Impairment, ImpairmentRecord, LabNamespace, Link, LinkEnd, Route, SWITCH_BRIDGE,
};
use crate::model::{NsRef, Rejection, State};

type Result<T> = std::result::Result<T, Rejection>;

/// What the kernel says about a namespace a lab command touches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabNsFacts {
    pub exists: bool,
    pub ifnames: Vec<String>,
}

pub type Facts = BTreeMap<String, LabNsFacts>;

pub use crate::model::lab::LinkRequest;

pub const FORWARD_KEYS: [&str; 2] = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"];

fn target(ns: &str) -> Target {
    Target::Ns(NsRef::Named(ns.to_string()))
}

/// Who already uses `end`, if anyone.
fn end_user(state: &State, end: &Endpoint, facts: &Facts) -> Option<String> {
    if let Some(l) = state.links.iter().find(|l| l.has_end(end)) {
        return Some(format!("link {} <-> {}", l.ends[0], l.ends[1]));
    }
    let ns = NsRef::Named(end.namespace.clone());
    if let Some((net, _)) = state
        .attachments_of(&ns)
        .find(|(_, a)| a.ifname == end.ifname)
    {
        return Some(format!("the attachment to network {}", net.name));
    }
    let live = facts
        .get(&end.namespace)
        .is_some_and(|f| f.ifnames.contains(&end.ifname));
    live.then(|| "an interface the namespace already has".to_string())
}

fn check_link(state: &State, req: &LinkRequest, ends: &[Endpoint; 2], facts: &Facts) -> Result<()> {
    if ends[0] == ends[1] {
        return Err(Rejection::SameEndTwice {
            end: req.ends[0].to_string(),
        });
    }
    for (asked, end) in req.ends.iter().zip(ends) {
        match asked {
            LinkEnd::Iface(_) => {
                if let Some(by) = end_user(state, end, facts) {
                    return Err(Rejection::EndInUse {
                        end: end.to_string(),
                        by,
                    });
                }
                if is_switch(state, &end.namespace) {
                    return Err(Rejection::EndInUse {
                        end: end.to_string(),
                        by: format!(
                            "switch {0} (a link ends on it as network:{0})",
                            end.namespace
                        ),
                    });
                }
            }
            LinkEnd::Switch(name) => check_switch(state, name, end, facts)?,
        }
    }
    for (i, asked) in req.ends.iter().enumerate() {
        if let LinkEnd::Switch(name) = asked {
            if !req.addresses[i].is_empty() {
                return Err(Rejection::SwitchPortSetting {
                    end: asked.to_string(),
                    switch: name.clone(),
                });
            }
        }
    }
    if let [LinkEnd::Switch(a), LinkEnd::Switch(b)] = &req.ends {
        if let Some(path) = switch_path(state, a, b) {
            return Err(Rejection::SwitchLoop {
                a: a.clone(),
                b: b.clone(),
                path: path.join(" - "),
            });
        }
    }
    if let Some(mtu) = req.mtu.filter(|m| !(68..=65535).contains(m)) {
        return Err(Rejection::MtuOutOfRange {
            mtu,
            min: 68,
            max: 65535,
        });
    }
    Ok(())
}

pub fn is_switch(state: &State, ns: &str) -> bool {
    state.lab_namespaces.get(ns).is_some_and(|r| r.switch)
}

/// `name` may be (or become) a switch: no network, namespace of a lab or
/// attachment has that name, and its port for this link is free.
fn check_switch(state: &State, name: &str, port: &Endpoint, facts: &Facts) -> Result<()> {
    let not = |what: String| {
        Err(Rejection::NotASwitch {
            name: name.to_string(),
            what,
        })
    };
    if state.networks.contains_key(name) {
        return not(
            "an IP network (namespaces join it with connect); a switch needs a name no network has"
                .into(),
        );
    }
    if !is_switch(state, name) {
        let ns = NsRef::Named(name.to_string());
        if let Some((net, _)) = state.attachments_of(&ns).next() {
            return not(format!("a namespace connected to network {}", net.name));
        }
        if state.lab_namespaces.contains_key(name) {
            return not("a namespace of a lab".into());
        }
        if facts.get(name).is_some_and(|f| f.exists) {
            return not("a namespace that already exists".into());
        }
    }
    if let Some(l) = state.links.iter().find(|l| l.has_end(port)) {
        return Err(Rejection::EndInUse {
            end: port.to_string(),
            by: format!("link {} <-> {}", l.ends[0], l.ends[1]),
        });
    }
    Ok(())
}

/// The switches from `a` to `b` over links between switches, if they are
/// connected already (a link between them would close a loop).
fn switch_path(state: &State, a: &str, b: &str) -> Option<Vec<String>> {
    if a == b {
        return Some(vec![a.to_string()]);
    }
    let trunks: Vec<(&str, &str)> = state
        .links
        .iter()
        .filter(|l| {
            is_switch(state, &l.ends[0].namespace) && is_switch(state, &l.ends[1].namespace)
        })
        .map(|l| (l.ends[0].namespace.as_str(), l.ends[1].namespace.as_str()))
        .collect();
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::from([(a, a)]);
    let mut queue = std::collections::VecDeque::from([a]);
    while let Some(at) = queue.pop_front() {
        if at == b {
            let mut path = vec![b.to_string()];
            let mut cur = b;
            while cur != a {
                cur = came_from[cur];
                path.push(cur.to_string());
            }
            path.reverse();
            return Some(path);
        }
        for &(x, y) in &trunks {
            let next = match (x == at, y == at) {
                (true, _) => y,
                (_, true) => x,
                _ => continue,
            };
            if !came_from.contains_key(next) {
                came_from.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The namespace's lab record, made (with the steps that make the
/// namespace, when it is missing) if there is none yet.
fn ensure_namespace(state: &mut State, ns: &str, facts: &Facts, ops: &mut Vec<Op>) {
    if state.lab_namespaces.contains_key(ns) {
        return;
    }
    let exists = facts.get(ns).is_some_and(|f| f.exists);
    if !exists {
        ops.push(Op::CreateNetns {
            name: ns.to_string(),
        });
    }
    ops.push(Op::LinkUp {
        target: target(ns),
        ifname: "lo".into(),
    });
    state.lab_namespaces.insert(
        ns.to_string(),
        LabNamespace {
            created: !exists,
            ..LabNamespace::default()
        },
    );
}

/// The switch's namespace and bridge, made if it has none yet.
fn ensure_switch(state: &mut State, name: &str, facts: &Facts, ops: &mut Vec<Op>) {
    if is_switch(state, name) {
        return;
    }
    ensure_namespace(state, name, facts, ops);
    ops.push(Op::CreateSwitch {
        netns: NsRef::Named(name.to_string()),
        bridge: SWITCH_BRIDGE.into(),
        mac: crate::model::names::derived_mac(&["switch", name]),
    });
    ops.push(Op::LinkUp {
        target: target(name),
        ifname: SWITCH_BRIDGE.into(),
    });
    let record = state.lab_namespaces.get_mut(name).expect("just ensured");
    record.switch = true;
}

/// Plans a link and records it in `state` (untouched when refused).
pub fn plan_link_add(state: &mut State, req: &LinkRequest, facts: &Facts) -> Result<Vec<Op>> {
    let ends = req.resolved_ends();
    check_link(state, req, &ends, facts)?;
    let mut ops = Vec::new();
    for asked in &req.ends {
        match asked {
            LinkEnd::Iface(e) => ensure_namespace(state, &e.namespace, facts, &mut ops),
            LinkEnd::Switch(s) => ensure_switch(state, s, facts, &mut ops),
        }
    }
    let [a, b] = &ends;
    ops.push(Op::CreateLinkPair {
        netns: NsRef::Named(a.namespace.clone()),
        ifname: a.ifname.clone(),
        peer_netns: NsRef::Named(b.namespace.clone()),
        peer_ifname: b.ifname.clone(),
        mtu: req.mtu,
    });
    for (end, addrs) in ends.iter().zip(&req.addresses) {
        for addr in addrs {
            ops.push(Op::AddAddress {
                target: target(&end.namespace),
                ifname: end.ifname.clone(),
                addr: *addr,
            });
        }
        ops.push(Op::LinkUp {
            target: target(&end.namespace),
            ifname: end.ifname.clone(),
        });
    }
    // Ports join their switch once both ends are up (the bridge then
    // forwards on them at once).
    for (asked, end) in req.ends.iter().zip(&ends) {
        if let LinkEnd::Switch(_) = asked {
            ops.push(Op::AddPort {
                netns: NsRef::Named(end.namespace.clone()),
                ifname: end.ifname.clone(),
                bridge: SWITCH_BRIDGE.into(),
            });
        }
    }
    state.links.push(Link {
        ends: ends.clone(),
        addresses: req.addresses.clone(),
        mtu: req.mtu,
        owner: req.owner.clone(),
    });
    if let Some(imp) = req.impair.as_ref().filter(|i| !i.is_none()) {
        for end in &ends {
            ops.extend(plan_impair(
                state,
                end,
                Some(imp),
                req.owner.clone(),
                facts,
            )?);
        }
    }
    Ok(ops)
}

/// Forgets a namespace's lab record once nothing of a lab uses it, and
/// deletes the namespace if nsnet made it and no attachment uses it
/// either (one that does inherits the duty).
fn release_namespace(state: &mut State, ns: &str) -> Vec<Op> {
    let in_use = state.links.iter().any(|l| l.uses_namespace(ns))
        || state
            .lab_namespaces
            .get(ns)
            .is_some_and(|r| r.forward || !r.routes.is_empty());
    if in_use {
        return Vec::new();
    }
    let Some(record) = state.lab_namespaces.remove(ns) else {
        return Vec::new();
    };
    state.impairments.retain(|e, _| e.namespace != ns);
    if !record.created {
        return Vec::new();
    }
    let named = NsRef::Named(ns.to_string());
    let heir = state
        .networks
        .values_mut()
        .find_map(|n| n.attachments.of_namespace_mut(&named));
    match heir {
        Some(a) => {
            std::sync::Arc::make_mut(a).namespace_created = true;
            Vec::new()
        }
        None => vec![Op::DeleteNetns {
            name: ns.to_string(),
        }],
    }
}

/// What a teardown of lab objects removes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removal {
    pub links: Vec<(Endpoint, Endpoint)>,
    pub routes: Vec<(String, Route)>,
    pub forward_off: Vec<String>,
    pub impairments: Vec<Endpoint>,
}

/// Plans a teardown of lab objects as a whole: the record first, then the
/// steps, only for what survives it. A namespace that goes takes its
/// links, routes, qdiscs and sysctls along (asynchronously, without the
/// RCU grace period a link deletion waits for); a link with an end in a
/// namespace that stays is deleted at once, so that the end is gone
/// before anyone wants its name again.
pub fn plan_lab_removal(state: &mut State, r: &Removal) -> Result<Vec<Op>> {
    let mut links = Vec::new();
    for (a, b) in &r.links {
        let pos = state
            .links
            .iter()
            .position(|l| l.joins(a, b))
            .ok_or_else(|| Rejection::NoSuchLink {
                a: a.to_string(),
                b: b.to_string(),
            })?;
        let link = state.links.remove(pos);
        for end in &link.ends {
            state.impairments.remove(end);
        }
        links.push(link);
    }
    for e in &r.impairments {
        state.impairments.remove(e);
    }
    for (ns, route) in &r.routes {
        if let Some(rec) = state.lab_namespaces.get_mut(ns) {
            rec.routes.retain(|x| x != route);
        }
    }
    for ns in &r.forward_off {
        if let Some(rec) = state.lab_namespaces.get_mut(ns) {
            rec.forward = false;
        }
    }
    let touched: std::collections::BTreeSet<String> = links
        .iter()
        .flat_map(|l| l.ends.iter().map(|e| e.namespace.clone()))
        .chain(r.routes.iter().map(|(n, _)| n.clone()))
        .chain(r.forward_off.iter().cloned())
        .chain(r.impairments.iter().map(|e| e.namespace.clone()))
        .collect();
    let mut release = Vec::new();
    for ns in &touched {
        release.extend(release_namespace(state, ns));
    }
    let goes = |ns: &str| {
        release
            .iter()
            .any(|o| matches!(o, Op::DeleteNetns { name } if name == ns))
    };
    let mut ops = Vec::new();
    for e in r.impairments.iter().filter(|e| !goes(&e.namespace)) {
        ops.push(Op::ClearImpairment {
            target: target(&e.namespace),
            ifname: e.ifname.clone(),
        });
    }
    for (ns, route) in r.routes.iter().filter(|(n, _)| !goes(n)) {
        ops.push(Op::DeleteRoute {
            target: target(ns),
            destination: route.destination,
            via: route.via,
        });
    }
    for ns in r.forward_off.iter().filter(|n| !goes(n)) {
        for key in FORWARD_KEYS {
            ops.push(Op::SetSysctl {
                target: target(ns),
                key: key.to_string(),
                value: "0".into(),
            });
        }
    }
    for l in links
        .iter()
        .filter(|l| !(goes(&l.ends[0].namespace) && goes(&l.ends[1].namespace)))
    {
        ops.push(Op::DeleteLink {
            target: target(&l.ends[0].namespace),
            name: l.ends[0].ifname.clone(),
        });
    }
    ops.extend(release);
    Ok(ops)
}

/// Plans the removal of the link between `a` and `b`.
pub fn plan_link_del(state: &mut State, a: &Endpoint, b: &Endpoint) -> Result<Vec<Op>> {
    plan_lab_removal(
        state,
        &Removal {
            links: vec![(a.clone(), b.clone())],
            ..Removal::default()
        },
    )
}

fn require_namespace(ns: &str, facts: &Facts) -> Result<()> {
    if facts.get(ns).is_some_and(|f| f.exists) {
        Ok(())
    } else {
        Err(Rejection::NoSuchNamespace {
            namespace: ns.to_string(),
            suggestion: None,
        })
    }
}

/// Plans a static route in `ns` (the same route again changes nothing).
pub fn plan_route_add(
    state: &mut State,
    ns: &str,
    route: &Route,
    owner: Option<String>,
    facts: &Facts,
) -> Result<Vec<Op>> {
    require_namespace(ns, facts)?;
    if let Some(r) = state.lab_namespaces.get(ns) {
        if r.routes.contains(route) {
            return Ok(Vec::new());
        }
        if r.routes.iter().any(|x| x.destination == route.destination) {
            return Err(Rejection::RouteExists {
                namespace: ns.to_string(),
                destination: route.destination,
            });
        }
    }
    let mut ops = Vec::new();
    ensure_namespace(state, ns, facts, &mut ops);
    let record = state.lab_namespaces.get_mut(ns).expect("just ensured");
    record.routes.push(route.clone());
    if owner.is_some() {
        record.owner = owner;
    }
    ops.push(Op::AddRoute {
        target: target(ns),
        destination: route.destination,
        via: route.via,
    });
    Ok(ops)
}

pub fn plan_route_del(state: &mut State, ns: &str, route: &Route) -> Result<Vec<Op>> {
    let recorded = state
        .lab_namespaces
        .get(ns)
        .is_some_and(|r| r.routes.contains(route));
    if !recorded {
        return Err(Rejection::NoSuchRoute {
            namespace: ns.to_string(),
            route: route.to_string(),
        });
    }
    plan_lab_removal(
        state,
        &Removal {
            routes: vec![(ns.to_string(), route.clone())],
            ..Removal::default()
        },
    )
}

/// Turns forwarding on (or off) in `ns`, making the namespace if it is
/// missing.
pub fn plan_forward(
    state: &mut State,
    ns: &str,
    on: bool,
    owner: Option<String>,
    facts: &Facts,
) -> Result<Vec<Op>> {
    let was = state.lab_namespaces.get(ns).is_some_and(|r| r.forward);
    if was == on {
        return Ok(Vec::new());
    }
    if !on {
        return plan_lab_removal(
            state,
            &Removal {
                forward_off: vec![ns.to_string()],
                ..Removal::default()
            },
        );
    }
    let mut ops = Vec::new();
    ensure_namespace(state, ns, facts, &mut ops);
    let record = state.lab_namespaces.get_mut(ns).expect("just ensured");
    record.forward = true;
    if owner.is_some() {
        record.owner = owner;
    }
    for key in FORWARD_KEYS {
        ops.push(Op::SetSysctl {
            target: target(ns),
            key: key.to_string(),
            value: "1".into(),
        });
    }
    Ok(ops)
}

/// Impairs (or, with `None`, clears) what `end` sends.
pub fn plan_impair(
    state: &mut State,
    end: &Endpoint,
    impairment: Option<&Impairment>,
    owner: Option<String>,
    facts: &Facts,
) -> Result<Vec<Op>> {
    let known = state.links.iter().any(|l| l.has_end(end))
        || state
            .attachments_of(&NsRef::Named(end.namespace.clone()))
            .any(|(_, a)| a.ifname == end.ifname)
        || facts
            .get(&end.namespace)
            .is_some_and(|f| f.ifnames.contains(&end.ifname));
    if !known {
        return Err(Rejection::NoSuchInterface {
            namespace: end.namespace.clone(),
            ifname: end.ifname.clone(),
        });
    }
    let previous = state.impairments.get(end).map(|r| r.impairment.clone());
    match impairment.filter(|i| !i.is_none()) {
        Some(imp) => {
            if previous.as_ref() == Some(imp) {
                return Ok(Vec::new());
            }
            state.impairments.insert(
                end.clone(),
                ImpairmentRecord {
                    impairment: imp.clone(),
                    owner,
                },
            );
            Ok(vec![Op::SetImpairment {
                target: target(&end.namespace),
                ifname: end.ifname.clone(),
                impairment: imp.clone(),
                previous,
            }])
        }
        None => {
            if previous.is_none() {
                return Err(Rejection::NotImpaired {
                    end: end.to_string(),
                });
            }
            state.impairments.remove(end);
            Ok(vec![Op::ClearImpairment {
                target: target(&end.namespace),
                ifname: end.ifname.clone(),
            }])
        }
    }
}

/// Recovery of an interrupted lab command: what `before` and `after`
/// agree on is kept in `kept`; the rest is torn down (see `recover`).
pub fn recover_lab(before: &State, after: &State, kept: &mut State) -> Vec<Op> {
    let mut ops = Vec::new();
    kept.links = before
        .links
        .iter()
        .filter(|l| after.links.contains(l))
        .cloned()
        .collect();
    for l in before.links.iter().chain(&after.links) {
        if !kept.links.contains(l) {
            ops.push(Op::DeleteLink {
                target: target(&l.ends[0].namespace),
                name: l.ends[0].ifname.clone(),
            });
        }
    }
    for (end, rec) in before.impairments.iter().chain(&after.impairments) {
        if before.impairments.get(end) == after.impairments.get(end) {
            kept.impairments.insert(end.clone(), rec.clone());
        } else if !ops.iter().any(|o| matches!(o, Op::ClearImpairment { ifname, target: t } if *ifname == end.ifname && *t == target(&end.namespace))) {
            ops.push(Op::ClearImpairment {
                target: target(&end.namespace),
                ifname: end.ifname.clone(),
            });
        }
    }
    let names: std::collections::BTreeSet<&String> = before
        .lab_namespaces
        .keys()
        .chain(after.lab_namespaces.keys())
        .collect();
    for ns in names {
        let (b, a) = (before.lab_namespaces.get(ns), after.lab_namespaces.get(ns));
        let both = |f: fn(&LabNamespace) -> bool| b.is_some_and(f) && a.is_some_and(f);
        let either = |f: fn(&LabNamespace) -> bool| b.is_some_and(f) || a.is_some_and(f);
        let record = LabNamespace {
            created: either(|r| r.created),
            forward: both(|r| r.forward),
            routes: b
                .map(|r| r.routes.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|r| a.is_some_and(|x| x.routes.contains(r)))
                .collect(),
            owner: b.and_then(|r| r.owner.clone()),
            switch: either(|r| r.switch),
        };
        for r in b.iter().chain(a.iter()).flat_map(|x| &x.routes) {
            if !record.routes.contains(r) {
                ops.push(Op::DeleteRoute {
                    target: target(ns),
                    destination: r.destination,
                    via: r.via,
                });
            }
        }
        if either(|r| r.forward) && !record.forward {
            for key in FORWARD_KEYS {
                ops.push(Op::SetSysctl {
                    target: target(ns),
                    key: key.to_string(),
                    value: "0".into(),
                });
            }
        }
        kept.lab_namespaces.insert(ns.clone(), record);
        ops.extend(release_namespace(kept, ns));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    fn link(a: &str, b: &str) -> LinkRequest {
        LinkRequest {
            ends: [LinkEnd::Iface(end(a)), LinkEnd::Iface(end(b))],
            addresses: [
                vec!["10.1.12.1/30".parse().unwrap()],
                vec!["10.1.12.2/30".parse().unwrap()],
            ],
            mtu: None,
            owner: None,
            impair: None,
        }
    }

    #[test]
    fn a_link_makes_its_namespaces_and_goes_with_them() {
        let mut s = State::default();
        let ops = plan_link_add(&mut s, &link("r1:eth1", "r2:eth1"), &Facts::new()).unwrap();
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(steps[0], "create namespace r1", "{steps:?}");
        assert!(
            steps.contains(&"create link r1:eth1 <-> r2:eth1".to_string()),
            "{steps:?}"
        );
        assert_eq!(s.links.len(), 1);
        let err =
            plan_link_add(&mut s.clone(), &link("r1:eth1", "r3:eth1"), &Facts::new()).unwrap_err();
        assert!(matches!(err, Rejection::EndInUse { .. }), "{err}");
        let ops = plan_link_del(&mut s, &end("r2:eth1"), &end("r1:eth1")).unwrap();
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        // Both namespaces go, and the pair with them.
        assert_eq!(steps, ["delete namespace r1", "delete namespace r2"]);
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn bad_links_are_refused_before_anything_is_made() {
        let mut s = State::default();
        let same = plan_link_add(&mut s, &link("r1:eth1", "r1:eth1"), &Facts::new()).unwrap_err();
        assert!(matches!(same, Rejection::SameEndTwice { .. }));
        let mut facts = Facts::new();
        facts.insert(
            "r1".into(),
            LabNsFacts {
                exists: true,
                ifnames: vec!["lo".into(), "eth1".into()],
            },
        );
        let taken = plan_link_add(&mut s, &link("r1:eth1", "r2:eth1"), &facts).unwrap_err();
        assert!(matches!(taken, Rejection::EndInUse { .. }), "{taken}");
        assert!(s.is_empty());
    }

    #[test]
    fn routes_and_forwarding_keep_a_namespace_until_the_last_goes() {
        let mut s = State::default();
        plan_link_add(&mut s, &link("r1:eth1", "r2:eth1"), &Facts::new()).unwrap();
        let mut facts = Facts::new();
        facts.insert(
            "r1".into(),
            LabNsFacts {
                exists: true,
                ifnames: vec![],
            },
        );
        let route: Route = "10.2.0.0/24 via 10.1.12.2".parse().unwrap();
        plan_route_add(&mut s, "r1", &route, None, &facts).unwrap();
        assert!(plan_route_add(&mut s, "r1", &route, None, &facts)
            .unwrap()
            .is_empty());
        plan_forward(&mut s, "r1", true, None, &facts).unwrap();
        let ops = plan_link_del(&mut s, &end("r1:eth1"), &end("r2:eth1")).unwrap();
        // r1 still routes and forwards: only r2 goes.
        assert_eq!(ops.last().unwrap().to_string(), "delete namespace r2");
        plan_route_del(&mut s, "r1", &route).unwrap();
        let ops = plan_forward(&mut s, "r1", false, None, &facts).unwrap();
        assert_eq!(ops.last().unwrap().to_string(), "delete namespace r1");
        assert!(s.is_empty(), "{s:?}");
    }

    fn switched(a: &str, b: &str) -> LinkRequest {
        let ends: [LinkEnd; 2] = [a.parse().unwrap(), b.parse().unwrap()];
        let ip = |e: &LinkEnd, x: &str| match e {
            LinkEnd::Iface(_) => vec![x.parse().unwrap()],
            LinkEnd::Switch(_) => vec![],
        };
        LinkRequest {
            addresses: [ip(&ends[0], "10.0.0.1/24"), ip(&ends[1], "10.0.0.2/24")],
            ends,
            mtu: None,
            owner: None,
            impair: None,
        }
    }

    #[test]
    fn a_switch_is_made_with_its_first_link_and_goes_with_its_last() {
        let mut s = State::default();
        let ops = plan_link_add(&mut s, &switched("h1:eth0", "network:s1"), &Facts::new()).unwrap();
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        for step in [
            "create namespace s1",
            "create switch s1 (bridge br0)",
            "create link h1:eth0 <-> s1:h1-eth0",
            "make s1:h1-eth0 a port of br0",
        ] {
            assert!(steps.contains(&step.to_string()), "{step}: {steps:?}");
        }
        assert!(is_switch(&s, "s1"));
        assert_eq!(s.links[0].ends[1].to_string(), "s1:h1-eth0");
        // A second link reuses the switch.
        let ops = plan_link_add(&mut s, &switched("h2:eth0", "network:s1"), &Facts::new()).unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::CreateSwitch { .. })));
        plan_link_del(&mut s, &end("h1:eth0"), &end("s1:h1-eth0")).unwrap();
        assert!(is_switch(&s, "s1"), "s1 still has h2");
        let ops = plan_link_del(&mut s, &end("s1:h2-eth0"), &end("h2:eth0")).unwrap();
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert!(
            steps.contains(&"delete namespace s1".to_string()),
            "{steps:?}"
        );
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn switches_refuse_loops_addresses_and_names_taken() {
        let mut s = State::default();
        for (a, b) in [("network:s1", "network:s2"), ("network:s2", "network:s3")] {
            plan_link_add(&mut s, &switched(a, b), &Facts::new()).unwrap();
        }
        let before = s.clone();
        let err = plan_link_add(&mut s, &switched("network:s3", "network:s1"), &Facts::new())
            .unwrap_err();
        match &err {
            Rejection::SwitchLoop { path, .. } => assert_eq!(path, "s3 - s2 - s1"),
            other => panic!("{other}"),
        }
        assert_eq!(err.exit_code(), 4);
        assert_eq!(s, before, "nothing recorded");
        let mut addressed = switched("h1:eth0", "network:s1");
        addressed.addresses[1] = vec!["10.0.0.9/24".parse().unwrap()];
        let err = plan_link_add(&mut s, &addressed, &Facts::new()).unwrap_err();
        assert!(matches!(err, Rejection::SwitchPortSetting { .. }), "{err}");
        // A namespace of a lab is not a switch, nor a switch a namespace.
        plan_link_add(&mut s, &link("r1:eth1", "r2:eth1"), &Facts::new()).unwrap();
        let err =
            plan_link_add(&mut s, &switched("h1:eth0", "network:r1"), &Facts::new()).unwrap_err();
        assert!(matches!(err, Rejection::NotASwitch { .. }), "{err}");
        let err = plan_link_add(&mut s, &link("s1:eth9", "h1:eth0"), &Facts::new()).unwrap_err();
        assert!(matches!(err, Rejection::EndInUse { .. }), "{err}");
        let mut facts = Facts::new();
        facts.insert(
            "s9".into(),
            LabNsFacts {
                exists: true,
                ifnames: vec![],
            },
        );
        let err = plan_link_add(&mut s, &switched("h1:eth0", "network:s9"), &facts).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn impairments_replace_and_clear() {
        let mut s = State::default();
        plan_link_add(&mut s, &link("a:eth1", "b:eth1"), &Facts::new()).unwrap();
        let mut imp = Impairment::default();
        imp.set("delay", "50ms").unwrap();
        let ops = plan_impair(&mut s, &end("a:eth1"), Some(&imp), None, &Facts::new()).unwrap();
        assert!(matches!(&ops[0], Op::SetImpairment { previous: None, .. }));
        assert!(
            plan_impair(&mut s, &end("a:eth1"), Some(&imp), None, &Facts::new())
                .unwrap()
                .is_empty()
        );
        let none =
            plan_impair(&mut s, &end("a:eth9"), Some(&imp), None, &Facts::new()).unwrap_err();
        assert!(matches!(none, Rejection::NoSuchInterface { .. }));
        plan_impair(&mut s, &end("a:eth1"), None, None, &Facts::new()).unwrap();
        let again = plan_impair(&mut s, &end("a:eth1"), None, None, &Facts::new()).unwrap_err();
        assert!(matches!(again, Rejection::NotImpaired { .. }));
    }
}

//! Rendering the model into nftables JSON (libnftables-json(5)).
//!
//! The table has a fixed *structure* (maps, chains, rules), which changes
//! only with networks, and map *elements*, one per published host port,
//! which change with attachments. Port lookups are map lookups, so the cost
//! per packet and per added mapping does not grow with the number of
//! mappings. A change of elements only is sent as element additions and
//! deletions; a change of structure replaces the table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::model::ports::PortMapping;
use crate::model::NsRef;
use crate::model::{Attachment, Attachments, GatewayMode, Network, State};

/// The one table nsnet owns.
pub const TABLE: &str = "nsnet";
const FAMILY: &str = "inet";
pub(super) const PREROUTING: &str = "prerouting";
pub(super) const OUTPUT: &str = "output";
pub(super) const POSTROUTING: &str = "postrouting";
pub(super) const FORWARD: &str = "forward";
/// Direct-access protection: before connection tracking and NAT.
pub const RAW_PREROUTING: &str = "raw_prerouting";
const PRIO_RAW: i32 = -300;
/// Published container ports of `routed` networks, by address, protocol
/// and port: what may come in from outside.
const ROUTED4: &str = "routed4";
const ROUTED6: &str = "routed6";
/// Numeric priorities: nft 1.0.6 rejects the named `dstnat` for an output
/// nat chain of an inet table.
const PRIO_DSTNAT: i32 = -100;
const PRIO_SRCNAT: i32 = 100;
const PRIO_FILTER: i32 = 0;

/// The port maps. Each kind is a pair with the same key: `NAME_dest` gives
/// the namespace's address, `NAME_dport` its port. (One map with
/// concatenated address . port data would do, but nft 1.0.6 cannot declare
/// one in JSON.) `any`: published on every host address of the family,
/// keyed by protocol and port. `addr`: on one host address, keyed by
/// address, protocol and port. `local`: on a loopback address; looked up
/// only for the host's own traffic (output hook), never for packets from
/// outside, so that a neighbour routing 127.0.0.1 to us cannot reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PortMap {
    Any,
    Addr,
    Local,
}

impl PortMap {
    /// The kinds a family has. IPv6 has no loopback kind: the kernel cannot
    /// forward a connection from ::1 (there is no route_localnet for IPv6),
    /// so such mappings are refused up front.
    fn kinds(v4: bool) -> &'static [PortMap] {
        if v4 {
            &[PortMap::Any, PortMap::Addr, PortMap::Local]
        } else {
            &[PortMap::Any, PortMap::Addr]
        }
    }

    fn dest(self, v4: bool) -> &'static str {
        match (self, v4) {
            (PortMap::Any, true) => "ports4_any_dest",
            (PortMap::Addr, true) => "ports4_addr_dest",
            (PortMap::Local, _) => "ports4_local_dest",
            (PortMap::Any, false) => "ports6_any_dest",
            (PortMap::Addr, false) => "ports6_addr_dest",
        }
    }

    fn dport(self, v4: bool) -> &'static str {
        match (self, v4) {
            (PortMap::Any, true) => "ports4_any_dport",
            (PortMap::Addr, true) => "ports4_addr_dport",
            (PortMap::Local, _) => "ports4_local_dport",
            (PortMap::Any, false) => "ports6_any_dport",
            (PortMap::Addr, false) => "ports6_addr_dport",
        }
    }

    fn of(m: &PortMapping) -> PortMap {
        match m.host_ip {
            None => PortMap::Any,
            Some(ip) if ip.is_unspecified() => PortMap::Any,
            Some(ip) if ip.is_loopback() => PortMap::Local,
            Some(_) => PortMap::Addr,
        }
    }
}

/// A map element: key and data, kept as JSON text so that sets of them can
/// be compared and diffed.
type Elements = BTreeMap<&'static str, BTreeSet<String>>;

/// The whole `inet nsnet` table for `state`, as one transaction that
/// replaces whatever the table held. `add` before `delete` makes the delete
/// valid when the table does not exist yet; with no networks the table is
/// removed and the ruleset is as before nsnet ran.
pub fn render(state: &State) -> Value {
    let state = &*state.bridged();
    let table = json!({"family": FAMILY, "name": TABLE});
    let mut cmds = vec![
        json!({"add": {"table": table}}),
        json!({"delete": {"table": table}}),
    ];
    if !state.networks.is_empty() {
        cmds.extend(structure(state));
        cmds.extend(element_adds(state));
    }
    json!({"nftables": cmds})
}

/// The commands that add every map element `state` calls for.
fn element_adds(state: &State) -> impl Iterator<Item = Value> {
    elements(state)
        .into_iter()
        .filter(|(_, elems)| !elems.is_empty())
        .map(|(map, elems)| element_cmd("add", map, &elems))
}

/// The whole table for `state` put in place of nsnet's objects without
/// deleting the table: its rules flushed, its maps and sets emptied, then
/// everything added again (adding what exists is a no-op). A transaction
/// that deletes a table costs an RCU grace period or two in the kernel
/// (15 ms here, against 4 for the rest of a new network's table); a
/// flush does not wait. Objects that are not nsnet's stay, and a chain
/// someone changed makes nft refuse it: `render` then replaces the table
/// outright (see `apply::live`).
fn render_in_place(state: &State) -> Value {
    let mut cmds = Vec::new();
    for cmd in structure(state) {
        let flush = ["table", "map", "set"].into_iter().find_map(|kind| {
            cmd["add"]
                .get(kind)
                .map(|obj| json!({"flush": {kind: obj}}))
        });
        cmds.push(cmd);
        cmds.extend(flush);
    }
    cmds.extend(element_adds(state));
    json!({"nftables": cmds})
}

/// What a firewall transaction does to nsnet's table, decided when it is
/// rendered: how it may be applied and what a refusal of it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Map elements added and deleted on a table that must be as nsnet
    /// left it.
    Elements,
    /// The whole table put in place of nsnet's objects without deleting
    /// the table (a chain someone changed makes nft refuse it).
    InPlace,
    /// The table deleted and made anew (or only deleted): nothing the live
    /// table holds can make nft refuse it.
    Replace,
}

/// One `nft -j -f -` transaction on nsnet's table, and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub kind: Kind,
    /// The nftables JSON commands.
    pub body: Value,
}

impl Transaction {
    /// The outright replacement by the table for `state` (`render`).
    pub fn replace(state: &State) -> Transaction {
        Transaction {
            kind: Kind::Replace,
            body: render(state),
        }
    }

    /// Whether it puts the whole table in place: it needs no knowledge of
    /// what the live table holds.
    pub fn replaces_table(&self) -> bool {
        self.kind != Kind::Elements
    }
}

/// The smallest transaction that turns the table for `old` into the table
/// for `new`: element changes only when the structure is the same, the
/// whole table otherwise (in place; deleted when `new` has no network).
/// `None` when nothing changes.
pub fn update(old: &State, new: &State) -> Option<Transaction> {
    let (old, new) = (&*old.bridged(), &*new.bridged());
    let same_structure =
        !old.networks.is_empty() && (same_networks(old, new) || structure(old) == structure(new));
    if !same_structure {
        return match (old.networks.is_empty(), new.networks.is_empty()) {
            (true, true) => None,
            (_, true) => Some(Transaction::replace(new)),
            (_, false) => Some(Transaction {
                kind: Kind::InPlace,
                body: render_in_place(new),
            }),
        };
    }
    // Only attachments that came, went or changed have elements to diff:
    // the cost of a change does not grow with the ports already published.
    let (gone, came) = changed_attachments(old, new);
    let (before, after) = (elements_of(gone), elements_of(came));
    let mut cmds = Vec::new();
    for (map, elems) in &before {
        let removed: BTreeSet<String> = elems.difference(&after[map]).cloned().collect();
        if !removed.is_empty() {
            cmds.push(element_cmd("delete", map, &removed));
        }
    }
    for (map, elems) in &after {
        let added: BTreeSet<String> = elems.difference(&before[map]).cloned().collect();
        if !added.is_empty() {
            cmds.push(element_cmd("add", map, &added));
        }
    }
    (!cmds.is_empty()).then(|| Transaction {
        kind: Kind::Elements,
        body: json!({"nftables": cmds}),
    })
}

/// Whether both states have the same networks with the same settings: the
/// structure of the table comes from those alone, so this spares rendering
/// it twice to compare (the common case: a namespace came or went).
fn same_networks(old: &State, new: &State) -> bool {
    old.networks.len() == new.networks.len()
        && old
            .networks
            .iter()
            .zip(&new.networks)
            .all(|((a, x), (b, y))| a == b && x.same_settings(y))
}

/// Attachments of `old` that are not in `new` as they were, and the other
/// way round.
type Placed<'a> = (&'a Network, &'a Attachment);

fn changed_attachments<'a>(old: &'a State, new: &'a State) -> (Vec<Placed<'a>>, Vec<Placed<'a>>) {
    // Only what the lists of a network do not share is looked at (see
    // `Attachments::differing`), and elements come from published ports
    // only: attachments without any are not even indexed.
    type Index<'a> = BTreeMap<(&'a str, &'a NsRef), Placed<'a>>;
    let (mut o, mut n): (Index<'a>, Index<'a>) = Default::default();
    let add = |index: &mut Index<'a>, net: &'a Network, atts: Vec<&'a Arc<Attachment>>| {
        for a in atts.into_iter().filter(|a| !a.ports.is_empty()) {
            index.insert((net.name.as_str(), &a.namespace), (net, a.as_ref()));
        }
    };
    // A network only one of the states has is compared with no attachments.
    static NONE: Attachments = Attachments::new();
    for (name, net) in &old.networks {
        let theirs = new.networks.get(name).map_or(&NONE, |x| &x.attachments);
        let (gone, _) = Attachments::differing(&net.attachments, theirs);
        add(&mut o, net, gone);
    }
    for (name, net) in &new.networks {
        let ours = old.networks.get(name).map_or(&NONE, |x| &x.attachments);
        let (_, came) = Attachments::differing(ours, &net.attachments);
        add(&mut n, net, came);
    }
    let gone = o
        .iter()
        .filter(|(k, (_, a))| n.get(*k).map(|p| p.1) != Some(*a))
        .map(|(_, p)| *p)
        .collect();
    let came = n
        .iter()
        .filter(|(k, (_, a))| o.get(*k).map(|p| p.1) != Some(*a))
        .map(|(_, p)| *p)
        .collect();
    (gone, came)
}

fn element_cmd(verb: &str, map: &str, elems: &BTreeSet<String>) -> Value {
    // nft wants at least one element per command; callers skip empty sets.
    let elem: Vec<Value> = elems
        .iter()
        .map(|e| serde_json::from_str(e).expect("elements are JSON we wrote"))
        .collect();
    json!({verb: {"element": {"family": FAMILY, "table": TABLE, "name": map, "elem": elem}}})
}

/// Every map element for `state`, with an entry (maybe empty) per map.
pub(super) fn elements(state: &State) -> Elements {
    elements_of(
        state
            .networks
            .values()
            .flat_map(|n| n.attachments.with_ports().map(move |a| (n, a.as_ref()))),
    )
}

/// The map elements of some attachments, with an entry (maybe empty) per map.
fn elements_of<'a>(atts: impl IntoIterator<Item = Placed<'a>>) -> Elements {
    let mut out: Elements = BTreeMap::new();
    for v4 in [true, false] {
        for map in PortMap::kinds(v4) {
            out.insert(map.dest(v4), BTreeSet::new());
            out.insert(map.dport(v4), BTreeSet::new());
        }
    }
    out.insert(ROUTED4, BTreeSet::new());
    out.insert(ROUTED6, BTreeSet::new());
    {
        for (net, att) in atts {
            routed_elements(net, att, &mut out);
            for m in &att.ports {
                for target in &att.addresses {
                    let v4 = target.addr().is_ipv4();
                    if !m.covers_family(v4) {
                        continue;
                    }
                    let map = PortMap::of(m);
                    for i in 0..m.count {
                        let mut key = vec![json!(m.protocol.as_str()), json!(m.host_port + i)];
                        if map != PortMap::Any {
                            key.insert(
                                0,
                                json!(m.host_ip.expect("addr maps have an ip").to_string()),
                            );
                        }
                        let key = json!({"concat": key});
                        let dest = json!([key, target.addr().to_string()]).to_string();
                        let dport = json!([key, m.port + i]).to_string();
                        out.get_mut(map.dest(v4))
                            .expect("all maps listed")
                            .insert(dest);
                        out.get_mut(map.dport(v4))
                            .expect("all maps listed")
                            .insert(dport);
                    }
                }
            }
        }
    }
    out
}

/// The published container ports of an attachment of a `routed` network,
/// reachable at its own address from outside.
fn routed_elements(net: &Network, att: &Attachment, out: &mut Elements) {
    for target in &att.addresses {
        let v4 = target.addr().is_ipv4();
        if net.internal || net.mode(v4) != GatewayMode::Routed {
            continue;
        }
        for m in att.ports.iter().filter(|m| m.covers_family(v4)) {
            for i in 0..m.count {
                let key =
                    json!({"concat": [target.addr().to_string(), m.protocol.as_str(), m.port + i]});
                out.get_mut(if v4 { ROUTED4 } else { ROUTED6 })
                    .expect("all sets listed")
                    .insert(key.to_string());
            }
        }
    }
}

/// Tables, maps, chains and rules: everything but map elements.
pub(super) fn structure(state: &State) -> Vec<Value> {
    let table = json!({"family": FAMILY, "name": TABLE});
    let mut cmds = vec![json!({"add": {"table": table}})];
    for v4 in [true, false] {
        let addr = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        for map in PortMap::kinds(v4) {
            let key: Vec<&str> = match map {
                PortMap::Any => vec!["inet_proto", "inet_service"],
                _ => vec![addr, "inet_proto", "inet_service"],
            };
            for (name, data) in [(map.dest(v4), addr), (map.dport(v4), "inet_service")] {
                cmds.push(json!({"add": {"map": {
                    "family": FAMILY, "table": TABLE, "name": name, "type": key, "map": data
                }}}));
            }
        }
    }
    for (name, addr) in [(ROUTED4, "ipv4_addr"), (ROUTED6, "ipv6_addr")] {
        cmds.push(json!({"add": {"set": {
            "family": FAMILY, "table": TABLE, "name": name,
            "type": [addr, "inet_proto", "inet_service"]
        }}}));
    }
    cmds.push(chain(RAW_PREROUTING, "filter", "prerouting", PRIO_RAW));
    cmds.push(chain(PREROUTING, "nat", "prerouting", PRIO_DSTNAT));
    cmds.push(chain(OUTPUT, "nat", "output", PRIO_DSTNAT));
    cmds.push(chain(POSTROUTING, "nat", "postrouting", PRIO_SRCNAT));
    cmds.push(chain(FORWARD, "filter", "forward", PRIO_FILTER));
    cmds.extend(port_rules());
    // Connections to published ports (DNAT) cross networks on purpose.
    cmds.push(rule(
        FORWARD,
        "nsnet: published ports",
        vec![ct_dnat(), json!({"accept": null})],
    ));
    let bridges = state.bridges();
    for net in state.networks.values() {
        cmds.extend(network_rules(net, &bridges));
    }
    for net in state.networks.values() {
        cmds.extend(protection_rules(net, state));
    }
    cmds
}

/// Interfaces whose traffic may reach `net`'s namespaces directly: its
/// bridge, its trusted interfaces, and the bridges of other networks when
/// neither side is isolated.
fn exempt_interfaces<'a>(net: &'a Network, state: &'a State) -> Vec<&'a str> {
    let mut out = vec![net.bridge.as_str()];
    out.extend(net.trusted_interfaces.iter().map(String::as_str));
    // Peers of an overlay network reach its namespaces over the tunnel.
    out.extend(net.overlay.iter().map(|o| o.vxlan.as_str()));
    if !net.isolate {
        out.extend(
            state
                .networks
                .values()
                .filter(|n| n.name != net.name && !n.isolate && !n.internal)
                .map(|n| n.bridge.as_str()),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// Direct-access protection and the inbound filter of `routed`, per
/// subnet (never per namespace), and inter-namespace isolation.
fn protection_rules(net: &Network, state: &State) -> Vec<Value> {
    let mut out = Vec::new();
    let comment = format!("nsnet network {}", net.name);
    let exempt = exempt_interfaces(net, state);
    let not_from = |names: &[&str]| json!({"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": name_set(names)}});
    for s in &net.subnets {
        let v4 = s.cidr.addr().is_ipv4();
        let mode = net.mode(v4);
        if mode == GatewayMode::Nat || (net.internal && mode != GatewayMode::NatUnprotected) {
            // Addressed to the subnet (the gateway included) but arriving
            // elsewhere than on the bridge: routed at us from outside.
            // Raw prerouting runs before NAT, so published ports, which
            // are addressed to the host, are untouched.
            let mut from: Vec<&str> = exempt.clone();
            from.push("lo");
            from.sort();
            from.dedup();
            out.push(rule(
                RAW_PREROUTING,
                &comment,
                vec![
                    addr_match("daddr", &s.cidr),
                    not_from(&from),
                    json!({"drop": null}),
                ],
            ));
        }
        if net.internal || !mode.filters_inbound() {
            continue;
        }
        // After conntrack: replies to connections the namespaces opened
        // pass; new connections from outside do not, but for the published
        // container ports and ping of a routed network.
        let inbound = vec![
            ifname_match("oifname", "==", &net.bridge),
            addr_match("daddr", &s.cidr),
            not_from(&exempt),
            json!({"match": {"op": "!=", "left": {"ct": {"key": "state"}}, "right": {"set": ["established", "related"]}}}),
        ];
        if mode == GatewayMode::Routed {
            let (icmp, set) = if v4 {
                ("icmp", ROUTED4)
            } else {
                ("icmpv6", ROUTED6)
            };
            let mut echo = inbound.clone();
            echo.push(json!({"match": {"op": "==", "left": {"payload": {"protocol": icmp, "field": "type"}}, "right": "echo-request"}}));
            echo.push(json!({"accept": null}));
            out.push(rule(FORWARD, &comment, echo));
            let mut published = inbound.clone();
            published.push(json!({"match": {"op": "==", "left": {"concat": [
                {"payload": {"protocol": proto(v4), "field": "daddr"}},
                {"meta": {"key": "l4proto"}},
                {"payload": {"protocol": "th", "field": "dport"}}
            ]}, "right": format!("@{set}")}}));
            published.push(json!({"accept": null}));
            out.push(rule(FORWARD, &comment, published));
        }
        let mut drop = inbound;
        drop.push(json!({"drop": null}));
        out.push(rule(FORWARD, &comment, drop));
    }
    if net.dns && net.has_gateway_addresses() {
        // nsnet's DNS server answers on the gateways for members only: a
        // query that reaches a gateway from anywhere but its bridge (or the
        // host itself) is dropped before it gets there, whatever the mode.
        let from: Vec<&str> = vec![net.bridge.as_str(), "lo"];
        for s in &net.subnets {
            let v4 = s.cidr.addr().is_ipv4();
            for l4 in ["udp", "tcp"] {
                out.push(rule(
                    RAW_PREROUTING,
                    &comment,
                    vec![
                        json!({"match": {"op": "==", "left": {"payload": {"protocol": proto(v4), "field": "daddr"}}, "right": s.gateway.to_string()}}),
                        json!({"match": {"op": "==", "left": {"payload": {"protocol": l4, "field": "dport"}}, "right": 53}}),
                        not_from(&from),
                        json!({"drop": null}),
                    ],
                ));
            }
        }
    }
    if !net.icc {
        // Published ports (DNAT) were accepted above; anything else that
        // the host would route from the bridge back onto it is not.
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                ifname_match("iifname", "==", &net.bridge),
                ifname_match("oifname", "==", &net.bridge),
                json!({"drop": null}),
            ],
        ));
    }
    out
}

fn ct_dnat() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}})
}

fn proto(v4: bool) -> &'static str {
    if v4 {
        "ip"
    } else {
        "ip6"
    }
}

fn loopback(v4: bool) -> Value {
    if v4 {
        json!({"prefix": {"addr": "127.0.0.0", "len": 8}})
    } else {
        json!("::1")
    }
}

/// `dnat ip to KEY map @NAME_dest : KEY map @NAME_dport`, where KEY is
/// `[ip daddr .] meta l4proto . th dport`.
fn dnat_lookup(v4: bool, map: PortMap) -> Value {
    let mut key = vec![
        json!({"meta": {"key": "l4proto"}}),
        json!({"payload": {"protocol": "th", "field": "dport"}}),
    ];
    if map != PortMap::Any {
        key.insert(
            0,
            json!({"payload": {"protocol": proto(v4), "field": "daddr"}}),
        );
    }
    let lookup = |name: &str| json!({"map": {"key": {"concat": key}, "data": format!("@{name}")}});
    json!({"dnat": {"family": proto(v4), "addr": lookup(map.dest(v4)), "port": lookup(map.dport(v4))}})
}

fn to_local_address() -> Value {
    json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}})
}

fn nfproto(v4: bool) -> Value {
    json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": if v4 { "ipv4" } else { "ipv6" }}})
}

/// The published-port lookups, the same for every network.
fn port_rules() -> Vec<Value> {
    let mut out = Vec::new();
    const C: &str = "nsnet: published ports";
    for v4 in [true, false] {
        let daddr = json!({"payload": {"protocol": proto(v4), "field": "daddr"}});
        // From outside: never towards loopback, whatever a neighbour routes
        // to us (Docker's CVE-class bug: moby#45610).
        out.push(rule(
            PREROUTING,
            C,
            vec![
                json!({"match": {"op": "==", "left": daddr, "right": loopback(v4)}}),
                json!({"return": null}),
            ],
        ));
        out.push(rule(
            PREROUTING,
            C,
            vec![
                to_local_address(),
                nfproto(v4),
                dnat_lookup(v4, PortMap::Any),
            ],
        ));
        out.push(rule(PREROUTING, C, vec![dnat_lookup(v4, PortMap::Addr)]));
        // From the host itself, including its loopback addresses.
        out.push(rule(
            OUTPUT,
            C,
            vec![
                to_local_address(),
                nfproto(v4),
                dnat_lookup(v4, PortMap::Any),
            ],
        ));
        out.push(rule(OUTPUT, C, vec![dnat_lookup(v4, PortMap::Addr)]));
        if v4 {
            out.push(rule(OUTPUT, C, vec![dnat_lookup(v4, PortMap::Local)]));
        }
        // A connection from loopback, now going to a namespace, needs a
        // source the namespace can answer.
        let saddr = json!({"payload": {"protocol": proto(v4), "field": "saddr"}});
        out.push(rule(
            POSTROUTING,
            C,
            vec![
                json!({"match": {"op": "==", "left": saddr, "right": loopback(v4)}}),
                ct_dnat(),
                json!({"masquerade": null}),
            ],
        ));
    }
    out
}

/// `{ "a", "b" }`: an anonymous set of interface names.
fn name_set(names: &[&str]) -> Value {
    if names.len() == 1 {
        json!(names[0])
    } else {
        json!({"set": names})
    }
}

fn chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {
        "family": FAMILY, "table": TABLE, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    }}})
}

fn rule(chain: &str, comment: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {
        "family": FAMILY, "table": TABLE, "chain": chain,
        "comment": comment, "expr": expr
    }}})
}

fn ifname_match(key: &str, op: &str, name: &str) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": name}})
}

fn addr_match(field: &str, subnet: &IpNet) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": proto(subnet.addr().is_ipv4()), "field": field}},
        "right": {"prefix": {"addr": subnet.network().to_string(), "len": subnet.prefix_len()}}}})
}

fn network_rules(net: &Network, bridges: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    let comment = format!("nsnet network {}", net.name);
    let others: Vec<&str> = bridges
        .iter()
        .copied()
        .filter(|b| *b != net.bridge)
        .collect();
    if net.isolate && !others.is_empty() && !net.internal {
        // Isolation: nothing is forwarded between this bridge and another
        // nsnet bridge, in either direction (so one isolated side is
        // enough). Internal networks drop all of it below anyway.
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                ifname_match("iifname", "==", &net.bridge),
                json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": name_set(&others)}}),
                json!({"drop": null}),
            ],
        ));
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": name_set(&others)}}),
                ifname_match("oifname", "==", &net.bridge),
                json!({"drop": null}),
            ],
        ));
    }
    if net.internal {
        // Internal: nothing is forwarded into or out of the bridge; traffic
        // between its own ports is bridged and never reaches this hook
        // unless br_netfilter hands it over, so allow bridge to bridge.
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                ifname_match("iifname", "==", &net.bridge),
                ifname_match("oifname", "!=", &net.bridge),
                json!({"drop": null}),
            ],
        ));
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                ifname_match("oifname", "==", &net.bridge),
                ifname_match("iifname", "!=", &net.bridge),
                json!({"drop": null}),
            ],
        ));
        return out;
    }
    for s in &net.subnets {
        // Hairpin: a namespace reaching a published port of a neighbour on
        // the same bridge (or its own) through a host address. The reply
        // must come back through the host, so the source becomes the
        // gateway. Matching on addresses, not on the bridge name, also
        // catches the path where br_netfilter bridges the packet.
        out.push(rule(
            POSTROUTING,
            &comment,
            vec![
                ct_dnat(),
                addr_match("saddr", &s.cidr),
                addr_match("daddr", &s.cidr),
                json!({"masquerade": null}),
            ],
        ));
        if net.masquerades(s.cidr.addr().is_ipv4()) {
            // Traffic from the subnet that leaves through any interface but
            // the bridge takes the address of that interface, as Docker does;
            // but for traffic to other hosts of an overlay network, which
            // keeps its source.
            // Never what the host sends itself over loopback (from a
            // gateway address to its own DNS server, say): that has no
            // other address to take.
            let mut expr = vec![
                addr_match("saddr", &s.cidr),
                ifname_match("oifname", "!=", &net.bridge),
                ifname_match("oifname", "!=", "lo"),
            ];
            if let Some(o) = &net.overlay {
                expr.push(json!({"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": {"prefix": {"addr": o.config.subnet.network().to_string(), "len": o.config.subnet.prefix_len()}}}}));
            }
            expr.push(json!({"masquerade": null}));
            out.push(rule(POSTROUTING, &comment, expr));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnets: &[&str], internal: bool, masquerade: bool) -> Network {
        let mode = if masquerade {
            GatewayMode::Nat
        } else {
            GatewayMode::Routed
        };
        Network {
            internal,
            masquerade,
            gateway_mode: mode,
            gateway_mode_v6: mode,
            ..crate::model::test_network(name, &format!("br-{name}"), subnets)
        }
    }

    fn with_ports(mut n: Network, ns: &str, addrs: &[&str], ports: &[&str]) -> Network {
        n.attachments.push(std::sync::Arc::new(Attachment {
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
            ..crate::model::test_attachment(ns)
        }));
        n
    }

    #[test]
    fn empty_state_removes_the_table() {
        insta::assert_json_snapshot!(render(&State::default()));
    }

    #[test]
    fn option_matrix() {
        let mut state = State::default();
        for n in [
            with_ports(
                net("dual", &["172.16.0.0/16", "fd00:1::/64"], false, true),
                "web",
                &["172.16.0.2/16", "fd00:1::2/64"],
                &[
                    "8080:80",
                    "127.0.0.1:8443:443",
                    "[2001:db8::1]:53:53/udp",
                    "7000-7001:70-71/sctp",
                ],
            ),
            with_ports(
                net("nonat", &["10.1.0.0/24", "fd00:2::/64"], false, false),
                "direct",
                &["10.1.0.2/24", "fd00:2::2/64"],
                &["8081:81", "5300-5301:53-54/udp"],
            ),
            Network {
                gateway_mode: GatewayMode::NatUnprotected,
                gateway_mode_v6: GatewayMode::Routed,
                icc: false,
                trusted_interfaces: vec!["eth9".into()],
                ..net("mixed", &["10.4.0.0/24", "fd00:4::/64"], false, true)
            },
            net("internal", &["10.2.0.0/24"], true, true),
            Network {
                isolate: false,
                ..net("open", &["10.3.0.0/24"], false, true)
            },
        ] {
            state.networks.insert(n.name.clone(), n);
        }
        insta::assert_json_snapshot!(render(&state));
    }

    #[test]
    fn port_changes_are_element_changes_only() {
        let mut old = State::default();
        let n = with_ports(
            net("a", &["10.0.0.0/24"], false, true),
            "x",
            &["10.0.0.2/24"],
            &["8080:80"],
        );
        old.networks.insert("a".into(), n.clone());
        let mut new = old.clone();
        let n2 = with_ports(n, "y", &["10.0.0.3/24"], &["9090:90/udp"]);
        new.networks.insert("a".into(), n2);
        let t = update(&old, &new).unwrap();
        assert_eq!(t.kind, Kind::Elements);
        insta::assert_json_snapshot!(t.body);
        // And back: the same elements are deleted.
        let back = update(&new, &old).unwrap().body;
        assert_eq!(
            back["nftables"][0]["delete"]["element"]["name"],
            "ports4_any_dest"
        );
        assert_eq!(
            back["nftables"][1]["delete"]["element"]["name"],
            "ports4_any_dport"
        );
        assert_eq!(back["nftables"].as_array().unwrap().len(), 2);
        assert!(update(&old, &old).is_none());
        assert!(update(&State::default(), &State::default()).is_none());
    }

    #[test]
    fn a_new_network_replaces_the_table_in_place() {
        let mut new = State::default();
        new.networks
            .insert("a".into(), net("a", &["10.0.0.0/24"], false, true));
        let t = update(&State::default(), &new).unwrap();
        assert_eq!(t.kind, Kind::InPlace);
        assert!(t.replaces_table());
        let t = t.body;
        // In place: the table and each of its maps and sets flushed right
        // after they are added, everything else as `render` has it.
        let cmds = t["nftables"].as_array().unwrap();
        let flushed: Vec<&Value> = cmds.iter().filter_map(|c| c.get("flush")).collect();
        let added: Vec<&Value> = cmds.iter().filter_map(|c| c.get("add")).collect();
        assert_eq!(flushed.len(), 1 + 10 + 2, "the table, 10 maps, 2 sets");
        for (i, cmd) in cmds.iter().enumerate() {
            if let Some(flush) = cmd.get("flush") {
                assert_eq!(cmds[i - 1]["add"], *flush, "flushed right after added");
            }
        }
        let whole = render(&new);
        let whole_adds: Vec<&Value> = whole["nftables"].as_array().unwrap()[2..]
            .iter()
            .filter_map(|c| c.get("add"))
            .collect();
        assert_eq!(added, whole_adds, "the same objects, rules and elements");
        // The last network gone: the table goes with it.
        let gone = update(&new, &State::default()).unwrap();
        assert_eq!(gone.kind, Kind::Replace);
        assert_eq!(gone.body["nftables"].as_array().unwrap().len(), 2);
    }
}

/// How many rules each chain of the table for `state` has.
pub fn rule_counts(state: &State) -> BTreeMap<String, usize> {
    let state = &*state.bridged();
    let mut counts = BTreeMap::new();
    if state.networks.is_empty() {
        return counts;
    }
    for cmd in structure(state) {
        if let Some(chain) = cmd["add"]["rule"]["chain"].as_str() {
            *counts.entry(chain.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// A forward-hook base chain with a drop policy in a table not ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignDrop {
    pub family: String,
    pub table: String,
    pub chain: String,
}

impl ForeignDrop {
    /// iptables' FORWARD chain (dockerd's), and of which family (true:
    /// ip6tables').
    pub fn iptables_forward(&self) -> Option<bool> {
        match (
            self.family.as_str(),
            self.table.as_str(),
            self.chain.as_str(),
        ) {
            ("ip", "filter", "FORWARD") => Some(false),
            ("ip6", "filter", "FORWARD") => Some(true),
            _ => None,
        }
    }
}

impl std::fmt::Display for ForeignDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain {} of table {} {} drops forwarded traffic by default (policy drop): \
             nsnet's networks cannot reach outside, or each other through published ports, \
             unless that table accepts them",
            self.chain, self.family, self.table
        )
    }
}

/// Forward-hook base chains with a drop policy in tables other than ours.
pub fn foreign_forward_drops(chains: &Value) -> Vec<ForeignDrop> {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    chains["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("chain"))
        .filter(|c| c["hook"] == "forward" && c["policy"] == "drop")
        .filter(|c| !(c["family"] == FAMILY && c["table"] == TABLE))
        .map(|c| ForeignDrop {
            family: text(&c["family"]),
            table: text(&c["table"]),
            chain: text(&c["name"]),
        })
        .collect()
}

/// The table as `nft -j list table` shows it right after `render` was
/// applied: what an intact table looks like (fakes and tests use it).
#[cfg(test)]
pub fn render_listing(state: &State) -> Value {
    let state = &*state.bridged();
    let mut items = vec![];
    let full = render(state);
    let elems = elements(state);
    let cmds = full["nftables"]
        .as_array()
        .expect("render makes a command list");
    for cmd in cmds.iter().skip(2) {
        let Some(add) = cmd.get("add") else { continue };
        if let Some((kind, map)) = ["map", "set"]
            .iter()
            .find_map(|k| add.get(*k).map(|m| (*k, m)))
        {
            let mut m = map.clone();
            let name = m["name"].as_str().expect("maps are named").to_string();
            let e: Vec<Value> = elems[name.as_str()]
                .iter()
                .map(|s| serde_json::from_str(s).expect("elements are JSON"))
                .collect();
            if !e.is_empty() {
                m["elem"] = json!(e);
            }
            items.push(json!({kind: m}));
        } else if let Some(k) = ["chain", "rule", "table"]
            .iter()
            .find(|k| add.get(**k).is_some())
        {
            items.push(json!({*k: add[*k]}));
        }
    }
    json!({"nftables": items})
}

#[cfg(test)]
mod listing_tests {
    use super::*;

    #[test]
    fn foreign_drop_policies_are_found() {
        let chains = json!({"nftables": [
            {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}},
            {"chain": {"family": "inet", "table": "nsnet", "name": "forward", "hook": "forward", "policy": "accept"}},
            {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "hook": "input", "policy": "drop"}},
        ]});
        let found = foreign_forward_drops(&chains);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].iptables_forward(), Some(false));
        assert!(
            found[0]
                .to_string()
                .starts_with("chain FORWARD of table ip filter"),
            "{found:?}"
        );
    }
}

//! Plans: the kernel and firewall steps one command needs, in order, each
//! with its own undo (`undo`). Planning is pure: it reads the recorded
//! model and facts gathered beforehand (`HostFacts`, `NsFacts`, whether the
//! firewall table is intact) and does no I/O; `apply` carries plans out.
//!
//! May import `model` and the firewall's pure rendering
//! (`firewall::rules`); never `kernel`, the firewall backend, `store` or
//! `apply`.

pub mod attach;
pub mod converge;
pub mod docker;
pub mod driver;
pub mod lab;
pub mod network;
pub mod recover;
pub mod undo;

pub use undo::undo_of;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::firewall::rules as fw;
use crate::model::{Attachment, NsRef, State};

/// Where an interface operation happens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The namespace nsnet itself runs in (where the bridges live).
    Host,
    Ns(NsRef),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Host => f.write_str("host"),
            Target::Ns(ns) => write!(f, "namespace {ns}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    CreateNetns {
        name: String,
    },
    DeleteNetns {
        name: String,
    },
    /// Several namespaces, created in parallel.
    CreateNamespaces {
        names: Vec<String>,
    },
    DeleteNamespaces {
        names: Vec<String>,
    },
    CreateBridge {
        name: String,
        mac: [u8; 6],
        mtu: Option<u32>,
        /// Shared with the network's veths, so that removing the network
        /// deletes bridge and ports in one request.
        group: Option<u32>,
    },
    /// A VXLAN device of an overlay network, with no learning: its peers
    /// are programmed by the agent.
    CreateVxlan {
        name: String,
        vni: u32,
        port: u16,
        local: std::net::Ipv4Addr,
        underlay: String,
        mac: [u8; 6],
        mtu: u32,
        group: u32,
    },
    CreateVeth {
        host: String,
        peer: String,
        netns: NsRef,
        bridge: String,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        group: u32,
        /// IPv6 on both ends; off for IPv4-only networks, set before
        /// either end is up so that no IPv6 autoconfiguration ever runs.
        ipv6: bool,
        /// The peer is made in the host, down, for a runtime (Docker) to
        /// move into `netns` and configure.
        handed: bool,
    },
    /// A step of a network on the LAN.
    Lan(LanOp),
    /// A point-to-point link: a veth pair with one end in each of two
    /// namespaces, down.
    CreateLinkPair {
        netns: NsRef,
        ifname: String,
        peer_netns: NsRef,
        peer_ifname: String,
        mtu: Option<u32>,
    },
    /// A switch: a bridge in the switch's own namespace, down.
    CreateSwitch {
        netns: NsRef,
        bridge: String,
        mac: [u8; 6],
    },
    /// Makes `ifname` a port of the bridge `bridge` in the same namespace.
    AddPort {
        netns: NsRef,
        ifname: String,
        bridge: String,
    },
    /// A static route (replacing one to the same destination).
    AddRoute {
        target: Target,
        destination: IpNet,
        via: IpAddr,
    },
    DeleteRoute {
        target: Target,
        destination: IpNet,
        via: IpAddr,
    },
    /// A netem qdisc at the root of an interface; `previous` is the
    /// impairment it replaces, for the undo.
    SetImpairment {
        target: Target,
        ifname: String,
        impairment: crate::model::lab::Impairment,
        previous: Option<crate::model::lab::Impairment>,
    },
    /// Removes the root qdisc of an interface.
    ClearImpairment {
        target: Target,
        ifname: String,
    },
    DeleteLink {
        target: Target,
        name: String,
    },
    /// Deletes the listed host links in one request when they are exactly
    /// the members of `group`; otherwise one by one, so that a foreign link
    /// that happens to share the group number is never touched.
    DeleteLinkGroup {
        group: u32,
        names: Vec<String>,
    },
    /// Deletes host links in one request: they are moved into a fresh,
    /// unused link group first, and the group is deleted.
    DeleteLinks {
        names: Vec<String>,
    },
    /// Moves host veths into `PARKED_LINK_GROUP`; deleting their
    /// namespaces afterwards lets the kernel destroy the pairs
    /// asynchronously, instead of one RCU grace period per deletion.
    ParkLinks {
        names: Vec<String>,
    },
    /// Detaches veths whose namespace stays (one a runtime or iproute2
    /// owns) without waiting for the kernel: their addresses go at once
    /// (nobody answers for them any more), the host ends are parked, and a
    /// detached `nsnet reap-parked` deletes them, paying the RCU grace
    /// periods of a deletion off the command's path.
    RetireLinks {
        links: Vec<RetiredLink>,
    },
    /// Deletes a parked host end that is still on its way out (an
    /// immediate re-connect wants its name); fine if it is gone already.
    ClearParked {
        name: String,
    },
    AddAddress {
        target: Target,
        ifname: String,
        addr: IpNet,
    },
    DeleteAddress {
        target: Target,
        ifname: String,
        addr: IpNet,
    },
    LinkUp {
        target: Target,
        ifname: String,
    },
    LinkDown {
        target: Target,
        ifname: String,
    },
    SetMac {
        target: Target,
        ifname: String,
        mac: [u8; 6],
    },
    AddDefaultRoute {
        target: Target,
        ifname: String,
        gateway: IpAddr,
    },
    SetSysctl {
        target: Target,
        key: String,
        value: String,
    },
    /// Forgets tracked connections answered by these addresses: flows to
    /// published ports of an attachment that is going away.
    ForgetFlows {
        addrs: Vec<IpAddr>,
    },
    /// Writes `/etc/netns/NAMESPACE/resolv.conf`.
    WriteResolvConf {
        namespace: String,
        servers: Vec<IpAddr>,
        search: Vec<String>,
    },
    /// Removes it (and the directory, when it is left empty).
    RemoveResolvConf {
        namespace: String,
    },
    /// Lets a bridge port send frames back out of the port they came in
    /// on: needed for a namespace to reach its own published port.
    SetHairpin {
        ifname: String,
    },
    /// Isolates a bridge port from the other isolated ports (inter-
    /// namespace communication off).
    SetPortIsolated {
        ifname: String,
    },
    /// Programs peers of an overlay network on its VXLAN device: a
    /// neighbour entry, a forwarding entry and an on-link route each (one
    /// netlink exchange); nothing when the device is gone.
    AddPeers {
        vxlan: String,
        peers: Vec<crate::model::overlay::Peer>,
    },
    RemovePeers {
        vxlan: String,
        peers: Vec<crate::model::overlay::Peer>,
    },
    /// Makes table `ip nsnet_vxlan` guard exactly these overlay networks
    /// (their VXLAN only from their peers); sets of networks that stay
    /// keep their peers. Not undone: the agent keeps it.
    GuardVxlan {
        guards: Vec<crate::model::overlay::Guard>,
    },
    /// Adds and removes peer addresses of network `vni`'s guard.
    GuardPeers {
        vni: u32,
        add: Vec<std::net::Ipv4Addr>,
        remove: Vec<std::net::Ipv4Addr>,
    },
    /// Makes nsnet's chain in Docker's DOCKER-USER (iptables, or
    /// ip6tables for `v6`) hold `rules`; none removes it. Not undone: it
    /// follows the record, whatever the record is.
    DockerForward {
        v6: bool,
        rules: Vec<String>,
    },
    /// Replaces nsnet's nftables table. `previous` is what to restore if a
    /// later step fails.
    Firewall {
        transaction: fw::Transaction,
        previous: fw::Transaction,
        /// The whole tables for after and before the step. When
        /// `transaction` is refused (someone flushed or changed the table),
        /// the whole table for after is applied instead: re-running a
        /// command then also repairs the firewall. (Rendered, not kept as
        /// states: copying the record would cost as much as it holds.)
        table_after: Box<serde_json::Value>,
        table_before: Box<serde_json::Value>,
    },
}

/// The steps of networks on the LAN (drivers macvlan and host-device).
#[derive(Debug, Clone, PartialEq)]
pub enum LanOp {
    /// A macvlan interface on host interface `parent`, made in `netns`
    /// (the host's own namespace when `None`), down.
    CreateMacvlan {
        netns: Option<NsRef>,
        ifname: String,
        parent: String,
        mode: crate::model::lan::MacvlanMode,
        mtu: Option<u32>,
        group: Option<u32>,
    },
    /// A route of the host to `destination` straight through an interface
    /// (no gateway): the host's way to a macvlan namespace.
    AddDeviceRoute {
        destination: IpNet,
        ifname: String,
    },
    DeleteDeviceRoute {
        destination: IpNet,
        ifname: String,
    },
    /// Moves host interface `device.name` into `netns`, renamed `ifname`.
    MoveDeviceIn {
        device: crate::model::lan::SavedDevice,
        netns: NsRef,
        ifname: String,
    },
    /// Moves `ifname` of `netns` back into the host as `device` was (name,
    /// MAC, MTU, addresses, up state); where it is back already, puts its
    /// state back.
    ReturnDevice {
        netns: NsRef,
        ifname: String,
        device: crate::model::lan::SavedDevice,
    },
}

/// A veth to retire: its host end, and its other end in a namespace that
/// stays.
#[derive(Debug, Clone, PartialEq)]
pub struct RetiredLink {
    pub host_ifname: String,
    pub netns: NsRef,
    pub ifname: String,
    pub addresses: Vec<IpNet>,
}

/// The ways host links go: deleted in one request, parked, retired.
fn fmt_host_link_removal(op: &Op, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match op {
        Op::DeleteLinkGroup { names, .. } => match names.as_slice() {
            [one] => write!(f, "delete link {one} in host"),
            _ => write!(f, "delete {} links in host in one batch", names.len()),
        },
        Op::DeleteLinks { names } => match names.as_slice() {
            [one] => write!(f, "delete link {one} in host"),
            _ => write!(f, "delete {} links in host in one batch", names.len()),
        },
        Op::ClearParked { name } => write!(f, "delete the parked host end {name}"),
        Op::RetireLinks { links } => match links.as_slice() {
            [one] => write!(
                f,
                "retire {} (addresses off {} in {}, deleted in the background)",
                one.host_ifname, one.ifname, one.netns
            ),
            _ => write!(
                f,
                "retire {} links (deleted in the background)",
                links.len()
            ),
        },
        Op::ParkLinks { names } => match names.as_slice() {
            [one] => write!(f, "park {one} until its namespace takes it along"),
            _ => write!(
                f,
                "park {} links until their namespaces take them along",
                names.len()
            ),
        },
        _ => unreachable!("a host link removal"),
    }
}

impl fmt::Display for LanOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LanOp as Op;
        match self {
            Op::CreateMacvlan {
                netns,
                ifname,
                parent,
                mode,
                ..
            } => match netns {
                Some(ns) => write!(f, "create macvlan {ifname} ({mode}) on {parent} in {ns}"),
                None => write!(f, "create macvlan {ifname} ({mode}) on {parent} in host"),
            },
            Op::AddDeviceRoute {
                destination,
                ifname,
            } => write!(f, "add route to {destination} dev {ifname} in host"),
            Op::DeleteDeviceRoute {
                destination,
                ifname,
            } => write!(f, "delete route to {destination} dev {ifname} in host"),
            Op::MoveDeviceIn {
                device,
                netns,
                ifname,
            } => write!(
                f,
                "move host interface {} into {netns} as {ifname}",
                device.name
            ),
            Op::ReturnDevice {
                netns,
                ifname,
                device,
            } => write!(
                f,
                "move {ifname} of {netns} back to the host as {}",
                device.name
            ),
        }
    }
}

/// Overlay peers and the firewall table.
fn fmt_overlay_or_firewall(op: &Op, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match op {
        Op::AddPeers { vxlan, peers } => write!(f, "add {} peer(s) on {vxlan}", peers.len()),
        Op::RemovePeers { vxlan, peers } => {
            write!(f, "remove {} peer(s) from {vxlan}", peers.len())
        }
        _ => write!(f, "apply nftables table inet nsnet"),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateNetns { name } => write!(f, "create namespace {name}"),
            Op::DeleteNetns { name } => write!(f, "delete namespace {name}"),
            Op::CreateNamespaces { names } => write!(f, "create {} namespaces", names.len()),
            Op::DeleteNamespaces { names } => write!(f, "delete {} namespaces", names.len()),
            Op::CreateBridge { name, .. } => write!(f, "create bridge {name}"),
            Op::CreateVxlan {
                name,
                vni,
                underlay,
                ..
            } => write!(f, "create vxlan device {name} (VNI {vni}) over {underlay}"),
            Op::CreateVeth {
                host,
                peer,
                netns,
                ipv6,
                handed,
                ..
            } => write!(
                f,
                "create veth {host} <-> {peer} {} {netns}{}",
                if *handed { "handed over for" } else { "in" },
                if *ipv6 { "" } else { " (IPv4 only)" }
            ),
            Op::DeleteLink { target, name } => write!(f, "delete link {name} in {target}"),
            Op::Lan(op) => write!(f, "{op}"),
            Op::CreateLinkPair { .. }
            | Op::CreateSwitch { .. }
            | Op::AddPort { .. }
            | Op::AddRoute { .. }
            | Op::DeleteRoute { .. }
            | Op::SetImpairment { .. }
            | Op::ClearImpairment { .. } => fmt_lab(self, f),
            Op::DeleteLinkGroup { .. }
            | Op::DeleteLinks { .. }
            | Op::ClearParked { .. }
            | Op::RetireLinks { .. }
            | Op::ParkLinks { .. } => fmt_host_link_removal(self, f),
            Op::AddAddress {
                target,
                ifname,
                addr,
            } => write!(f, "add address {addr} to {ifname} in {target}"),
            Op::DeleteAddress {
                target,
                ifname,
                addr,
            } => write!(f, "delete address {addr} from {ifname} in {target}"),
            Op::LinkUp { target, ifname } => write!(f, "bring up {ifname} in {target}"),
            Op::LinkDown { target, ifname } => write!(f, "bring down {ifname} in {target}"),
            Op::SetMac {
                target,
                ifname,
                mac,
            } => write!(
                f,
                "set MAC of {ifname} in {target} to {}",
                crate::model::names::format_mac(mac)
            ),
            Op::AddDefaultRoute {
                target, gateway, ..
            } => write!(f, "add default route via {gateway} in {target}"),
            Op::SetSysctl { target, key, value } => write!(f, "set {key} = {value} in {target}"),
            Op::ForgetFlows { addrs } => {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                write!(f, "forget tracked connections to {}", list.join(", "))
            }
            Op::WriteResolvConf { namespace, .. } => {
                write!(f, "write /etc/netns/{namespace}/resolv.conf")
            }
            Op::RemoveResolvConf { namespace } => {
                write!(f, "remove /etc/netns/{namespace}/resolv.conf")
            }
            Op::SetHairpin { ifname } => write!(f, "turn on hairpin mode of bridge port {ifname}"),
            Op::SetPortIsolated { ifname } => write!(f, "isolate bridge port {ifname}"),
            Op::GuardVxlan { guards } => {
                write!(
                    f,
                    "guard the VXLAN port of {} overlay network(s)",
                    guards.len()
                )
            }
            Op::GuardPeers { vni, add, remove } => write!(
                f,
                "let {} more and {} fewer peers of VNI {vni} through",
                add.len(),
                remove.len()
            ),
            Op::DockerForward { v6, rules } => write!(
                f,
                "place {} rules of nsnet's chain in {} DOCKER-USER",
                rules.len(),
                if *v6 { "ip6tables'" } else { "iptables'" }
            ),
            Op::Firewall { .. } | Op::AddPeers { .. } | Op::RemovePeers { .. } => {
                fmt_overlay_or_firewall(self, f)
            }
        }
    }
}

/// How a lab step reads.
fn fmt_lab(op: &Op, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match op {
        Op::CreateLinkPair {
            netns,
            ifname,
            peer_netns,
            peer_ifname,
            ..
        } => write!(
            f,
            "create link {netns}:{ifname} <-> {peer_netns}:{peer_ifname}"
        ),
        Op::CreateSwitch { netns, bridge, .. } => {
            write!(f, "create switch {netns} (bridge {bridge})")
        }
        Op::AddPort {
            netns,
            ifname,
            bridge,
        } => write!(f, "make {netns}:{ifname} a port of {bridge}"),
        Op::AddRoute {
            target,
            destination,
            via,
        } => write!(f, "add route {destination} via {via} in {target}"),
        Op::DeleteRoute {
            target,
            destination,
            via,
        } => write!(f, "delete route {destination} via {via} in {target}"),
        Op::SetImpairment {
            target,
            ifname,
            impairment,
            ..
        } => write!(f, "impair {ifname} in {target}: {impairment}"),
        Op::ClearImpairment { target, ifname } => {
            write!(f, "clear the impairment of {ifname} in {target}")
        }
        _ => unreachable!("lab steps only"),
    }
}

impl Op {
    /// The firewall step that turns nsnet's table for `old` into the one
    /// for `new`, if anything changes. Its undo is the reverse change.
    pub fn firewall(old: &State, new: &State) -> Option<Op> {
        let transaction = fw::update(old, new)?;
        let previous = fw::update(new, old).unwrap_or_else(|| fw::Transaction::replace(old));
        Some(Op::Firewall {
            transaction,
            previous,
            table_after: Box::new(fw::render(new)),
            table_before: Box::new(fw::render(old)),
        })
    }

    /// A step that replaces the whole table with the one for `after`,
    /// whatever the live table looks like (repairs); its undo puts back the
    /// table for `before`.
    pub fn whole_firewall(before: &State, after: &State) -> Op {
        let (after, before) = (
            fw::Transaction::replace(after),
            fw::Transaction::replace(before),
        );
        Op::Firewall {
            table_after: Box::new(after.body.clone()),
            table_before: Box::new(before.body.clone()),
            transaction: after,
            previous: before,
        }
    }

    /// Forgets the tracked connections to the published ports of
    /// `attachments` (none when nothing was published).
    pub fn forget_flows<'a>(attachments: impl IntoIterator<Item = &'a Attachment>) -> Option<Op> {
        let addrs: Vec<IpAddr> = attachments
            .into_iter()
            .filter(|a| !a.ports.is_empty())
            .flat_map(|a| a.addresses.iter().map(|n| n.addr()))
            .collect();
        (!addrs.is_empty()).then_some(Op::ForgetFlows { addrs })
    }
}

/// The resolv.conf files that point named namespaces at nsnet's DNS
/// server: one per namespace on a DNS network (where the server answers
/// it, its search domains), unless a topology file gave the namespace
/// servers of its own.
/// Writes, rewrites and removes what `after` needs compared with what is
/// recorded, and records it in `after`.
pub fn resolv_steps(after: &mut State) -> Vec<Op> {
    resolv_steps_of(after, None)
}

/// `resolv_steps` for the named namespaces only (those a command attached
/// or detached): the cost stays that of the change, not of every namespace
/// on the host.
pub fn resolv_steps_for<'a>(
    after: &mut State,
    namespaces: impl IntoIterator<Item = &'a crate::model::NsRef>,
) -> Vec<Op> {
    let names: std::collections::BTreeSet<String> = namespaces
        .into_iter()
        .filter_map(|n| n.name().map(str::to_string))
        .collect();
    resolv_steps_of(after, Some(&names))
}

fn resolv_steps_of(
    after: &mut State,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Vec<Op> {
    use crate::model::{ResolvConf, DNS_OWNER};
    use std::collections::BTreeMap;
    let in_scope = |name: &str| only.is_none_or(|o| o.contains(name));
    let mut wanted: BTreeMap<String, ResolvConf> = BTreeMap::new();
    for net in after.networks.values() {
        let servers = net.dns_addresses();
        if servers.is_empty() {
            continue;
        }
        // The namespaces in scope are looked up, not every attachment read.
        let atts: Vec<&Arc<Attachment>> = match only {
            Some(names) => names
                .iter()
                .flat_map(|n| net.attachments.of_namespace(&NsRef::Named(n.clone())))
                .collect(),
            None => net.attachments.iter().collect(),
        };
        for a in atts {
            let Some(name) = a.namespace.name().filter(|n| in_scope(n)) else {
                continue;
            };
            let conf = wanted
                .entry(name.to_string())
                .or_insert_with(|| ResolvConf {
                    servers: Vec::new(),
                    owner: DNS_OWNER.to_string(),
                    search: Vec::new(),
                });
            conf.servers.extend(&servers);
            let domain = net.domain().to_string();
            if !conf.search.contains(&domain) {
                conf.search.push(domain);
            }
        }
    }
    let mut ops = Vec::new();
    // Those in scope are looked up: the recorded entries are not decoded.
    let recorded: Vec<String> = match only {
        Some(names) => names
            .iter()
            .filter(|n| {
                after
                    .resolv_confs
                    .get(n)
                    .is_some_and(|c| c.owner == DNS_OWNER)
            })
            .cloned()
            .collect(),
        None => after
            .resolv_confs
            .iter()
            .filter(|(_, c)| c.owner == DNS_OWNER)
            .map(|(n, _)| n.clone())
            .collect(),
    };
    for name in recorded {
        if !wanted.contains_key(&name) {
            after.resolv_confs.remove(&name);
            ops.push(Op::RemoveResolvConf { namespace: name });
        }
    }
    for (name, conf) in wanted {
        match after.resolv_confs.get(&name) {
            Some(c) if c.owner != DNS_OWNER || **c == conf => continue,
            _ => {}
        }
        ops.push(Op::WriteResolvConf {
            namespace: name.clone(),
            servers: conf.servers.clone(),
            search: conf.search.clone(),
        });
        after.resolv_confs.insert(name, conf.into());
    }
    ops
}

/// Retirement leaves a veth in place for a moment: a plan that makes the
/// same host end, or the same interface in the same namespace, again (a
/// topology edit reconnecting a namespace) deletes those at once instead.
pub fn delete_what_is_made_again(ops: &[Op]) -> std::borrow::Cow<'_, [Op]> {
    let made: Vec<(&String, &NsRef, &String)> = ops
        .iter()
        .filter_map(|o| match o {
            Op::CreateVeth {
                host, peer, netns, ..
            } => Some((host, netns, peer)),
            _ => None,
        })
        .collect();
    let again = |l: &RetiredLink| {
        made.iter()
            .any(|(h, n, p)| **h == l.host_ifname || (**n == l.netns && **p == l.ifname))
    };
    let conflict = |o: &Op| matches!(o, Op::RetireLinks { links } if links.iter().any(again));
    if !ops.iter().any(conflict) {
        return std::borrow::Cow::Borrowed(ops);
    }
    let mut out = Vec::with_capacity(ops.len() + 1);
    for op in ops {
        match op {
            Op::RetireLinks { links } if conflict(op) => {
                let (now, later): (Vec<RetiredLink>, Vec<RetiredLink>) =
                    links.iter().cloned().partition(again);
                out.push(Op::DeleteLinks {
                    names: now.into_iter().map(|l| l.host_ifname).collect(),
                });
                if !later.is_empty() {
                    out.push(Op::RetireLinks { links: later });
                }
            }
            other => out.push(other.clone()),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The steps of a plan without its firewall steps: plans that are merged
/// get one firewall step for the whole, computed from the merged states.
pub fn without_firewall(ops: Vec<Op>) -> impl Iterator<Item = Op> {
    ops.into_iter()
        .filter(|o| !matches!(o, Op::Firewall { .. }))
}

/// Gathers the namespace creations of a plan into one step at its start,
/// which creates them in parallel. Nothing before a namespace's creation
/// depends on it, so moving them first is safe.
pub fn batch_namespaces(ops: Vec<Op>) -> Vec<Op> {
    let names: Vec<String> = ops
        .iter()
        .flat_map(|o| match o {
            Op::CreateNetns { name } => std::slice::from_ref(name),
            Op::CreateNamespaces { names } => names.as_slice(),
            _ => &[],
        })
        .cloned()
        .collect();
    if names.len() < 2 {
        return ops;
    }
    std::iter::once(Op::CreateNamespaces { names })
        .chain(
            ops.into_iter()
                .filter(|o| !matches!(o, Op::CreateNetns { .. } | Op::CreateNamespaces { .. })),
        )
        .collect()
}

/// When nsnet's table is not intact (flushed, edited by hand: a fact
/// gathered before planning), turns element-only firewall steps into
/// whole-table ones, so that any command that touches the firewall also
/// repairs it.
pub fn heal_firewall(ops: &mut [Op], table_intact: bool) {
    if table_intact {
        return;
    }
    for op in ops.iter_mut() {
        if let Op::Firewall {
            transaction,
            table_after,
            ..
        } = op
        {
            if !transaction.replaces_table() {
                *transaction = fw::Transaction {
                    kind: fw::Kind::Replace,
                    body: (**table_after).clone(),
                };
            }
        }
    }
}

/// Whether applying `ops` needs to know if the live table is intact: only
/// element-wise firewall steps do, on top of a table that should exist.
pub fn needs_intact_table(ops: &[Op], before: &State) -> bool {
    !before.networks.is_empty()
        && ops
            .iter()
            .any(|o| matches!(o, Op::Firewall { transaction, .. } if !transaction.replaces_table()))
}

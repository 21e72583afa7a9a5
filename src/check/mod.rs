//! Drift: the recorded state against the kernel and the firewall, as typed
//! findings. `check`, `up`'s repair, CNI CHECK and STATUS all decide on the
//! variants; the sentence a user reads is rendered here, in one place.
//! Read-only: every question goes through `Probe`.
//!
//! May import `model`, `plan` (for `Target`), `kernel`'s value types, the
//! firewall's rendering, and `host` (the `Probe` it asks).

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use serde::Serialize;

pub use crate::host::Probe;
use crate::kernel::netlink::{LinkInfo, LinkKind};
use crate::model::lab::Endpoint;
use crate::model::{sysctl, Attachment, Network, NsRef, State};
use crate::plan::driver::Device;
use crate::plan::Target;

/// One thing nsnet made that is missing or different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    BridgeMissing {
        network: String,
        bridge: String,
    },
    NotABridge {
        network: String,
        bridge: String,
    },
    BridgeDown {
        network: String,
        bridge: String,
    },
    /// The VXLAN device of an overlay network is gone or down.
    TunnelMissing {
        network: String,
        device: String,
    },
    /// Nothing limits an overlay network's VXLAN to its peers (no agent
    /// has guarded it, or the table was removed).
    VxlanUnguarded {
        network: String,
    },
    /// A long-running process a topology file runs in a node has exited
    /// while the node lives.
    ProcessExited {
        namespace: String,
        command: String,
        log: String,
        owner: String,
    },
    /// Another host claims the subnet this host's bridge has (this host's
    /// claim lapsed while it was cut off from etcd): the agent noted it.
    SubnetTaken {
        network: String,
        subnet: IpNet,
        holder: std::net::IpAddr,
    },
    /// The guard lets other addresses through than the peers programmed.
    VxlanGuardStale {
        network: String,
        missing: Vec<std::net::Ipv4Addr>,
        extra: Vec<std::net::Ipv4Addr>,
    },
    GatewayMissing {
        network: String,
        bridge: String,
        address: IpNet,
    },
    HostVethMissing {
        network: String,
        namespace: NsRef,
        ifname: String,
    },
    HostVethOffBridge {
        network: String,
        namespace: NsRef,
        ifname: String,
        bridge: String,
    },
    NamespaceGone {
        network: String,
        namespace: NsRef,
    },
    InterfaceMissing {
        network: String,
        namespace: NsRef,
        ifname: String,
    },
    InterfaceDown {
        network: String,
        namespace: NsRef,
        ifname: String,
    },
    AddressMissing {
        network: String,
        namespace: NsRef,
        ifname: String,
        address: IpNet,
    },
    DefaultRouteMissing {
        network: String,
        namespace: NsRef,
        ipv4: bool,
    },
    /// A forwarding sysctl nsnet's networks need.
    Sysctl {
        key: String,
        wanted: String,
    },
    /// nsnet's nftables table differs from the record.
    Firewall {
        drift: crate::firewall::drift::TableDrift,
    },
    /// Networks with DNS exist and the host's DNS server is not running.
    DnsServerDown,
    /// A link's end (its namespace or interface) is gone.
    LinkEndMissing {
        end: Endpoint,
        link: [Endpoint; 2],
    },
    /// A switch's port is not on the switch's bridge (or the bridge is
    /// gone): frames from that link go nowhere.
    SwitchPortDetached {
        end: Endpoint,
        link: [Endpoint; 2],
    },
    /// A static route nsnet added is not in the namespace's table.
    RouteMissing {
        namespace: String,
        route: crate::model::lab::Route,
    },
    /// An interface's impairment is not what was recorded.
    ImpairmentDrift {
        end: Endpoint,
        wanted: String,
        found: String,
    },
    /// The host interface a LAN network is on is gone (a macvlan
    /// network's parent: the kernel took every namespace's interface on
    /// it along), or a host-device network's device is neither in the
    /// host nor in its namespace.
    LanInterfaceMissing {
        network: String,
        ifname: String,
    },
    /// The host's own interface on a macvlan network (`--host-access`) is
    /// gone, down or without its address.
    HostAccessMissing {
        network: String,
        ifname: String,
    },
    /// The host's route to a namespace of a macvlan network, through its
    /// host-access interface, is gone.
    HostRouteMissing {
        network: String,
        namespace: NsRef,
        address: IpNet,
    },
}

impl Finding {
    /// The network concerned, if any.
    pub fn network(&self) -> Option<&str> {
        use Finding::*;
        match self {
            BridgeMissing { network, .. }
            | NotABridge { network, .. }
            | BridgeDown { network, .. }
            | TunnelMissing { network, .. }
            | VxlanUnguarded { network }
            | SubnetTaken { network, .. }
            | VxlanGuardStale { network, .. }
            | GatewayMissing { network, .. }
            | HostVethMissing { network, .. }
            | HostVethOffBridge { network, .. }
            | NamespaceGone { network, .. }
            | InterfaceMissing { network, .. }
            | InterfaceDown { network, .. }
            | AddressMissing { network, .. }
            | LanInterfaceMissing { network, .. }
            | HostAccessMissing { network, .. }
            | HostRouteMissing { network, .. }
            | DefaultRouteMissing { network, .. } => Some(network),
            Sysctl { .. }
            | Firewall { .. }
            | DnsServerDown
            | LinkEndMissing { .. }
            | SwitchPortDetached { .. }
            | RouteMissing { .. }
            | ImpairmentDrift { .. }
            | ProcessExited { .. } => None,
        }
    }

    /// The attachment's namespace, for findings about one attachment.
    pub fn namespace(&self) -> Option<&NsRef> {
        use Finding::*;
        match self {
            HostVethMissing { namespace, .. }
            | HostVethOffBridge { namespace, .. }
            | NamespaceGone { namespace, .. }
            | InterfaceMissing { namespace, .. }
            | InterfaceDown { namespace, .. }
            | AddressMissing { namespace, .. }
            | HostRouteMissing { namespace, .. }
            | DefaultRouteMissing { namespace, .. } => Some(namespace),
            _ => None,
        }
    }

    /// About the network's bridge itself (its presence, kind, state or
    /// gateway addresses), not about one attachment.
    pub fn is_about_the_bridge(&self) -> bool {
        matches!(
            self,
            Finding::BridgeMissing { .. }
                | Finding::NotABridge { .. }
                | Finding::BridgeDown { .. }
                | Finding::GatewayMissing { .. }
                | Finding::TunnelMissing { .. }
                | Finding::LanInterfaceMissing { .. }
                | Finding::HostAccessMissing { .. }
        )
    }

    /// About the attachment of `ns` to `network`.
    pub fn is_about(&self, network: &str, ns: &NsRef) -> bool {
        self.network() == Some(network) && self.namespace() == Some(ns)
    }
}

impl Finding {
    /// What puts it right: `check --repair` for what the record alone
    /// restores, otherwise the command to run.
    pub fn remedy(&self) -> String {
        use Finding::*;
        match self {
            Sysctl { .. }
            | Firewall { .. }
            | BridgeDown { .. }
            | HostRouteMissing { .. }
            | DnsServerDown => "nsnet check --repair".into(),
            NamespaceGone { .. } => "nsnet gc".into(),
            VxlanUnguarded { .. } | VxlanGuardStale { .. } => {
                "run nsnet agent on this host: it keeps the guard in step with the peers".into()
            }
            ProcessExited { owner, .. } => format!("nsnet up -f {owner}"),
            SubnetTaken { network, .. } => format!(
                "leave and join again: nsnet network rm {network} --force, then nsnet network create {network} --driver overlay ... as before (this host's namespaces get addresses of a new host subnet)"
            ),
            LinkEndMissing { link: [a, b], .. } | SwitchPortDetached { link: [a, b], .. } => format!(
                "nsnet link del {a} {b} && nsnet link add {a} {b} ... (or nsnet up -f FILE if a topology file made it)"
            ),
            RouteMissing { namespace, route } => format!(
                "nsnet route del {namespace} {route} && nsnet route add {namespace} {route}"
            ),
            ImpairmentDrift { end, wanted, .. } => {
                let flags: Vec<String> = wanted
                    .split(' ')
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .map(|kv| format!("--{}", kv.join(" ")))
                    .collect();
                format!("nsnet impair {end} {}", flags.join(" "))
            }
            BridgeMissing { network, .. }
            | NotABridge { network, .. }
            | GatewayMissing { network, .. }
            | LanInterfaceMissing { network, .. }
            | HostAccessMissing { network, .. }
            | TunnelMissing { network, .. } => format!(
                "nsnet network rm {network} --force, then create it again (or nsnet up -f FILE if a topology file made it)"
            ),
            HostVethMissing { network, namespace, .. }
            | HostVethOffBridge { network, namespace, .. }
            | InterfaceMissing { network, namespace, .. }
            | InterfaceDown { network, namespace, .. }
            | AddressMissing { network, namespace, .. }
            | DefaultRouteMissing { network, namespace, .. } => format!(
                "nsnet disconnect {network} {namespace} && nsnet connect {network} {namespace} (or nsnet up -f FILE if a topology file made it)"
            ),
        }
    }

    /// Whether `check --repair` puts it right.
    pub fn repairable(&self) -> bool {
        matches!(
            self,
            Finding::Sysctl { .. }
                | Finding::Firewall { .. }
                | Finding::BridgeDown { .. }
                | Finding::HostRouteMissing { .. }
                | Finding::DnsServerDown
        )
    }
}

impl Finding {
    /// The findings about an overlay network's tunnel and its guard, and
    /// about the processes of nodes.
    fn fmt_more(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Finding::*;
        match self {
            SwitchPortDetached { end, link: [a, b] } => write!(
                f,
                "link {a} {b}: {end} is not a port of the switch's bridge {}",
                crate::model::lab::SWITCH_BRIDGE
            ),
            TunnelMissing { network, device } => write!(
                f,
                "network {network}: VXLAN device {device} is missing or down (no traffic to other hosts)"
            ),
            VxlanUnguarded { network } => write!(
                f,
                "network {network}: VXLAN is accepted from anyone (table ip nsnet_vxlan has no guard for it)"
            ),
            VxlanGuardStale {
                network,
                missing,
                extra,
            } => write!(
                f,
                "network {network}: the VXLAN guard is stale: peers not let through {missing:?}, others let through {extra:?}"
            ),
            SubnetTaken {
                network,
                subnet,
                holder,
            } => write!(
                f,
                "network {network} is degraded: host {holder} now claims this host's subnet {subnet} (this host's claim lapsed); the two hosts' namespaces cannot reach each other"
            ),
            ProcessExited {
                namespace,
                command,
                log,
                ..
            } => write!(
                f,
                "{namespace}: process {command:?} has exited (its output: {log}, or nsnet logs {namespace})"
            ),
            LanInterfaceMissing { network, ifname } => write!(
                f,
                "network {network}: host interface {ifname} is gone (its namespaces have no way to the LAN)"
            ),
            HostAccessMissing { network, ifname } => write!(
                f,
                "network {network}: the host's interface {ifname} is missing, down or without its address (the host cannot reach the namespaces)"
            ),
            HostRouteMissing {
                network,
                namespace,
                address,
            } => write!(
                f,
                "network {network}, namespace {namespace}: the host's route to {address} is missing"
            ),
            _ => unreachable!("called for tunnel, LAN and process findings only"),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Finding::*;
        match self {
            BridgeMissing { network, bridge } => {
                write!(f, "network {network}: bridge {bridge} is missing")
            }
            NotABridge { network, bridge } => {
                write!(f, "network {network}: {bridge} is no longer a bridge")
            }
            BridgeDown { network, bridge } => {
                write!(f, "network {network}: bridge {bridge} is down")
            }
            DnsServerDown => write!(
                f,
                "the DNS server of nsnet networks is not running (names do not resolve)"
            ),
            LinkEndMissing { end, link: [a, b] } => {
                write!(f, "link {a} {b}: end {end} is missing")
            }
            RouteMissing { namespace, route } => {
                write!(f, "namespace {namespace}: route {route} is missing")
            }
            ImpairmentDrift { end, wanted, found } => write!(
                f,
                "{end}: impairment is {found}, the record says {wanted}"
            ),
            TunnelMissing { .. }
            | VxlanUnguarded { .. }
            | VxlanGuardStale { .. }
            | SubnetTaken { .. }
            | SwitchPortDetached { .. }
            | LanInterfaceMissing { .. }
            | HostAccessMissing { .. }
            | HostRouteMissing { .. }
            | ProcessExited { .. } => self.fmt_more(f),
            GatewayMissing {
                network,
                bridge,
                address,
            } => write!(
                f,
                "network {network}: gateway address {address} is missing from {bridge}"
            ),
            HostVethMissing {
                network,
                namespace,
                ifname,
            } => write!(
                f,
                "network {network}, namespace {namespace}: host interface {ifname} is missing"
            ),
            HostVethOffBridge {
                network,
                namespace,
                ifname,
                bridge,
            } => write!(
                f,
                "network {network}, namespace {namespace}: host interface {ifname} is not on bridge {bridge}"
            ),
            NamespaceGone { network, namespace } => write!(
                f,
                "network {network}, namespace {namespace}: the namespace is gone (nsnet gc cleans up after it)"
            ),
            InterfaceMissing {
                network,
                namespace,
                ifname,
            } => write!(
                f,
                "network {network}, namespace {namespace}: interface {ifname} is missing"
            ),
            InterfaceDown {
                network,
                namespace,
                ifname,
            } => write!(
                f,
                "network {network}, namespace {namespace}: interface {ifname} is down"
            ),
            AddressMissing {
                network,
                namespace,
                ifname,
                address,
            } => write!(
                f,
                "network {network}, namespace {namespace}: address {address} is missing from {ifname}"
            ),
            DefaultRouteMissing {
                network,
                namespace,
                ipv4,
            } => write!(
                f,
                "network {network}, namespace {namespace}: no {} default route",
                if *ipv4 { "IPv4" } else { "IPv6" }
            ),
            Sysctl { key, wanted } => write!(f, "sysctl {key} is not {wanted}"),
            Firewall { drift } => write!(f, "{drift}"),
        }
    }
}

/// Findings serialize as the sentence a user reads.
impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Things nsnet made that are missing or different.
    pub drift: Vec<Finding>,
    /// Things of others that get in nsnet's way.
    pub warnings: Vec<String>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.drift.is_empty()
    }

    /// Whether nsnet's firewall table needs to be put back whole.
    pub fn firewall_damaged(&self) -> bool {
        self.drift
            .iter()
            .any(|d| matches!(d, Finding::Firewall { .. }))
    }
}

type Result<T> = std::result::Result<T, crate::host::Error>;

/// The bridge of `net` and its gateway addresses; returns the bridge's
/// index when it is there to compare ports against.
/// An overlay network's VXLAN guard against the peers programmed.
fn guard_findings(net: &Network, probe: &mut dyn Probe, out: &mut Vec<Finding>) -> Result<()> {
    let Some(o) = &net.overlay else {
        return Ok(());
    };
    let network = net.name.clone();
    if let (Some(c), Some(s)) = (&o.conflict, net.subnet_v4()) {
        out.push(Finding::SubnetTaken {
            network: network.clone(),
            subnet: s.cidr,
            holder: c.holder,
        });
    }
    let Some((through, true)) = probe.vxlan_guard(o.config.vni)? else {
        out.push(Finding::VxlanUnguarded { network });
        return Ok(());
    };
    let peers: Vec<std::net::Ipv4Addr> = probe
        .peers(&o.vxlan)?
        .iter()
        .filter_map(|p| match p.vtep {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    let missing: Vec<_> = peers
        .iter()
        .filter(|p| !through.contains(p))
        .copied()
        .collect();
    let extra: Vec<_> = through
        .iter()
        .filter(|t| !peers.contains(t))
        .copied()
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        out.push(Finding::VxlanGuardStale {
            network,
            missing,
            extra,
        });
    }
    Ok(())
}

fn bridge_findings(net: &Network, host: &HostView, out: &mut Vec<Finding>) -> Option<u32> {
    let network = net.name.clone();
    let bridge = net.bridge.clone();
    let Some(link) = host.links.iter().find(|l| l.name == net.bridge) else {
        out.push(Finding::BridgeMissing { network, bridge });
        return None;
    };
    if link.kind != LinkKind::Bridge {
        out.push(Finding::NotABridge {
            network: network.clone(),
            bridge: bridge.clone(),
        });
    }
    if !link.up {
        out.push(Finding::BridgeDown {
            network: network.clone(),
            bridge: bridge.clone(),
        });
    }
    for device in crate::plan::driver::of(net.driver()).devices(net) {
        let Device::Tunnel { name } = device else {
            continue;
        };
        if !host.links.iter().any(|l| l.name == name && l.up) {
            out.push(Finding::TunnelMissing {
                network: network.clone(),
                device: name,
            });
        }
    }
    let addrs: Vec<IpNet> = host
        .addresses
        .iter()
        .filter(|a| a.index == link.index)
        .map(|a| a.addr)
        .collect();
    for s in net.subnets.iter().filter(|_| net.has_gateway_addresses()) {
        if !addrs.contains(&s.gateway_net()) {
            out.push(Finding::GatewayMissing {
                network: network.clone(),
                bridge: bridge.clone(),
                address: s.gateway_net(),
            });
        }
    }
    Some(link.index)
}

/// The host's links and addresses, read once per check: they are shared
/// by every network and attachment.
struct HostView {
    links: Vec<crate::kernel::netlink::LinkInfo>,
    addresses: Vec<crate::kernel::netlink::AddressInfo>,
    /// Read only when a network routes through the host's own interface
    /// on a LAN (`--host-access`).
    routes: Vec<crate::kernel::netlink::RouteInfo>,
}

/// The end of a Docker attachment inside the container: Docker renamed
/// it (`ethN`), so it is found by the address Docker gave it.
fn handed_link(
    probe: &mut dyn Probe,
    inside: &Target,
    a: &Attachment,
) -> Result<Option<crate::kernel::netlink::LinkInfo>> {
    let addresses = probe.addresses(inside)?;
    let Some(index) = addresses
        .iter()
        .find(|x| a.addresses.contains(&x.addr))
        .map(|x| x.index)
    else {
        return Ok(None);
    };
    Ok(probe.links(inside)?.into_iter().find(|l| l.index == index))
}

/// One attachment: its host end on the bridge, and inside the namespace
/// its interface, addresses and default routes.
fn attachment_findings(
    net: &Network,
    a: &Attachment,
    bridge: u32,
    host: &HostView,
    probe: &mut dyn Probe,
    out: &mut Vec<Finding>,
) -> Result<()> {
    let network = net.name.clone();
    let namespace = a.namespace.clone();
    match host.links.iter().find(|l| l.name == a.host_ifname) {
        _ if !net.has_bridge() => {}
        None => out.push(Finding::HostVethMissing {
            network: network.clone(),
            namespace: namespace.clone(),
            ifname: a.host_ifname.clone(),
        }),
        Some(l) if l.master != Some(bridge) => out.push(Finding::HostVethOffBridge {
            network: network.clone(),
            namespace: namespace.clone(),
            ifname: a.host_ifname.clone(),
            bridge: net.bridge.clone(),
        }),
        Some(_) => {}
    }
    if !probe.namespace_exists(&a.namespace)? {
        out.push(Finding::NamespaceGone { network, namespace });
        return Ok(());
    }
    let inside = Target::Ns(a.namespace.clone());
    let link = match &a.docker {
        Some(_) => handed_link(probe, &inside, a)?,
        None => probe.link(&inside, &a.ifname)?,
    };
    let Some(link) = link else {
        out.push(Finding::InterfaceMissing {
            network,
            namespace,
            ifname: a.ifname.clone(),
        });
        return Ok(());
    };
    if !link.up {
        out.push(Finding::InterfaceDown {
            network: network.clone(),
            namespace: namespace.clone(),
            ifname: a.ifname.clone(),
        });
    }
    let have: Vec<IpNet> = probe
        .addresses(&inside)?
        .into_iter()
        .filter(|x| x.index == link.index)
        .map(|x| x.addr)
        .collect();
    for want in a.addresses.iter().filter(|w| !have.contains(w)) {
        out.push(Finding::AddressMissing {
            network: network.clone(),
            namespace: namespace.clone(),
            ifname: a.ifname.clone(),
            address: *want,
        });
    }
    if net.internal {
        return Ok(());
    }
    for ipv4 in [true, false] {
        // One dump per family the network has (an IPv4-only network's
        // attachment: one instead of two).
        if !net.subnets.iter().any(|s| s.cidr.addr().is_ipv4() == ipv4) {
            continue;
        }
        let has = probe
            .routes_of_family(&inside, ipv4)?
            .iter()
            .any(|r| r.destination.prefix_len() == 0);
        if !has {
            out.push(Finding::DefaultRouteMissing {
                network: network.clone(),
                namespace: namespace.clone(),
                ipv4,
            });
        }
    }
    Ok(())
}

/// A network on the LAN: its host interface (and the host's own one on
/// it, with its routes), then each attachment inside its namespace.
fn lan_findings(
    net: &Network,
    host: &HostView,
    probe: &mut dyn Probe,
    out: &mut Vec<Finding>,
) -> Result<()> {
    let network = net.name.clone();
    let has = |name: &str| host.links.iter().find(|l| l.name == name);
    for device in crate::plan::driver::of(net.driver()).devices(net) {
        match device {
            Device::Parent { name } if has(&name).is_none() => {
                out.push(Finding::LanInterfaceMissing {
                    network,
                    ifname: name,
                });
                return Ok(());
            }
            Device::HostAccess { name, addresses } => {
                let intact = has(&name).filter(|l| {
                    l.up && addresses.iter().all(|a| {
                        host.addresses
                            .iter()
                            .any(|x| x.index == l.index && x.addr == *a)
                    })
                });
                match intact {
                    Some(l) => host_route_findings(net, l.index, &host.routes, out),
                    None => out.push(Finding::HostAccessMissing {
                        network: network.clone(),
                        ifname: name,
                    }),
                }
            }
            _ => {}
        }
    }
    if let Some(crate::model::lan::Lan::HostDevice(d)) = &net.lan {
        if net.attachments.is_empty() && has(&d.device).is_none() {
            out.push(Finding::LanInterfaceMissing {
                network,
                ifname: d.device.clone(),
            });
        }
    }
    for a in &net.attachments {
        attachment_findings(net, a, 0, host, probe, out)?;
    }
    Ok(())
}

/// The host's route to each namespace of a macvlan network, through its
/// host-access interface (link `oif`).
fn host_route_findings(
    net: &Network,
    oif: u32,
    routes: &[crate::kernel::netlink::RouteInfo],
    out: &mut Vec<Finding>,
) {
    for a in &net.attachments {
        for addr in &a.addresses {
            let want = IpNet::from(addr.addr());
            if !routes
                .iter()
                .any(|r| r.destination == want && r.oif == Some(oif))
            {
                out.push(Finding::HostRouteMissing {
                    network: net.name.clone(),
                    namespace: a.namespace.clone(),
                    address: want,
                });
            }
        }
    }
}

/// Drift of the networks `keep` selects; the sysctls and the firewall
/// table are checked once, whatever the selection.
pub fn check_where(
    state: &State,
    keep: impl Fn(&Network) -> bool,
    probe: &mut dyn Probe,
) -> Result<Report> {
    let mut report = Report::default();
    let selected: Vec<&Network> = state.networks.values().filter(|n| keep(n)).collect();
    if !selected.is_empty() {
        let host_access = selected
            .iter()
            .any(|n| n.macvlan().is_some_and(|m| m.host_access.is_some()));
        let host = HostView {
            links: probe.links(&Target::Host)?,
            addresses: probe.addresses(&Target::Host)?,
            routes: match host_access {
                true => probe.routes(&Target::Host)?,
                false => Vec::new(),
            },
        };
        for net in selected {
            if !net.has_bridge() {
                lan_findings(net, &host, probe, &mut report.drift)?;
                continue;
            }
            guard_findings(net, probe, &mut report.drift)?;
            if let Some(bridge) = bridge_findings(net, &host, &mut report.drift) {
                for a in &net.attachments {
                    attachment_findings(net, a, bridge, &host, probe, &mut report.drift)?;
                }
            }
        }
    }
    for (key, value) in sysctl::needed(state) {
        if probe.sysctl(key).as_deref() != Some(value) {
            report.drift.push(Finding::Sysctl {
                key: key.to_string(),
                wanted: value.to_string(),
            });
        }
    }
    lab_findings(state, probe, &mut report.drift)?;
    let live = probe.firewall_table()?;
    report.drift.extend(
        crate::firewall::drift::drift(state, live.as_ref())
            .into_iter()
            .map(|drift| Finding::Firewall { drift }),
    );
    if !state.networks.is_empty() {
        report.warnings = forward_warnings(state, probe)?;
    }
    Ok(report)
}

/// Other tables that would drop nsnet's forwarded traffic. dockerd's
/// FORWARD policy DROP is no warning while nsnet's rules in DOCKER-USER
/// let nsnet's bridges pass; it is one, saying so, when they are missing
/// or stale.
fn forward_warnings(state: &State, probe: &mut dyn Probe) -> Result<Vec<String>> {
    let bridges = state.bridges();
    let mut out = Vec::new();
    for drop in probe.foreign_forward_drops()? {
        if let Some(v6) = drop.iptables_forward() {
            match probe.docker_forward(v6)? {
                Some(placed) if placed.serves(&bridges) => continue,
                Some(_) => {
                    out.push(format!(
                        "Docker's {} FORWARD chain drops nsnet's forwarded traffic: nsnet's \
                         rules in DOCKER-USER are missing or stale (`nsnet docker-plugin` keeps \
                         them in step)",
                        if v6 { "ip6tables" } else { "iptables" }
                    ));
                    continue;
                }
                None => {}
            }
        }
        out.push(drop.to_string());
    }
    Ok(out)
}

/// Links, routes and impairments the record has and the kernel lacks.
fn lab_findings(state: &State, probe: &mut dyn Probe, out: &mut Vec<Finding>) -> Result<()> {
    let ns_target = |ns: &str| Target::Ns(NsRef::Named(ns.to_string()));
    let live_link = |probe: &mut dyn Probe, ns: &str, ifname: &str| -> Result<Option<LinkInfo>> {
        if !probe.namespace_exists(&NsRef::Named(ns.to_string()))? {
            return Ok(None);
        }
        probe.link(&ns_target(ns), ifname)
    };
    // Each switch's bridge, looked up once for all its ports.
    let mut bridges: BTreeMap<&str, Option<u32>> = BTreeMap::new();
    for l in &state.links {
        for e in &l.ends {
            let Some(port) = live_link(probe, &e.namespace, &e.ifname)? else {
                out.push(Finding::LinkEndMissing {
                    end: e.clone(),
                    link: l.ends.clone(),
                });
                continue;
            };
            if !crate::plan::lab::is_switch(state, &e.namespace) {
                continue;
            }
            let bridge = match bridges.get(e.namespace.as_str()) {
                Some(b) => *b,
                None => {
                    let target = ns_target(&e.namespace);
                    let b = probe
                        .link(&target, crate::model::lab::SWITCH_BRIDGE)?
                        .map(|b| b.index);
                    *bridges.entry(&e.namespace).or_insert(b)
                }
            };
            if bridge.is_none() || port.master != bridge {
                out.push(Finding::SwitchPortDetached {
                    end: e.clone(),
                    link: l.ends.clone(),
                });
            }
        }
    }
    for (ns, r) in &state.lab_namespaces {
        if r.routes.is_empty() || !probe.namespace_exists(&NsRef::Named(ns.clone()))? {
            continue;
        }
        let live = probe.routes(&ns_target(ns))?;
        for route in &r.routes {
            let found = live
                .iter()
                .any(|x| x.destination == route.destination && x.gateway == Some(route.via));
            if !found {
                out.push(Finding::RouteMissing {
                    namespace: ns.clone(),
                    route: route.clone(),
                });
            }
        }
    }
    for (end, rec) in &state.impairments {
        if live_link(probe, &end.namespace, &end.ifname)?.is_none() {
            continue;
        }
        let live = probe.impairment(&ns_target(&end.namespace), &end.ifname)?;
        if live.as_ref() != Some(&rec.impairment) {
            out.push(Finding::ImpairmentDrift {
                end: end.clone(),
                wanted: rec.impairment.to_string(),
                found: live.map_or_else(|| "none".to_string(), |i| i.to_string()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

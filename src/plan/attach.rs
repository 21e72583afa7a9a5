//! Planning attachments: a veth pair from a namespace to a network's
//! bridge, with addresses, `lo` up and a default route via the gateway;
//! and their removal. Pure over the record and `NsFacts`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Op, Target};
use crate::model::ipam::{self, IpamError, Subnet};
use crate::model::ports::{HostListener, PortMapping, Protocol};
use crate::model::{
    names, Attachment, ConnectRequest, Network, NsRef, Rejection, RequestedIp, State,
};

type Result<T> = std::result::Result<T, Rejection>;

/// What the kernel says about the namespace being attached.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NsFacts {
    pub exists: bool,
    /// It is the host's own namespace (where the bridges are).
    pub is_host: bool,
    /// Interface names already inside it.
    pub ifnames: Vec<String>,
    /// Host interface names in use.
    pub host_ifnames: Vec<String>,
    /// The derived host end exists, parked by a disconnect of this network
    /// and on its way out with its old namespace: it is deleted first.
    pub parked_host_end: bool,
    /// Families (true = IPv4) that already have a default route inside.
    pub default_routes: Vec<bool>,
    /// br_netfilter hands bridged IPv4 and IPv6 frames to the forward
    /// chain, whose rules then keep namespaces of a `--no-icc` network
    /// apart. Without it, their bridge ports are isolated at layer 2 (with
    /// it, port isolation would also stop published ports between them:
    /// br_netfilter bridges a DNAT to the same bridge port to port).
    pub bridge_netfilter: bool,
    /// Host sockets listening on the protocols the request publishes.
    pub host_listeners: Vec<HostListener>,
    /// What probing the LAN found (macvlan networks).
    pub lan_probe: super::driver::lan::LanProbe,
    /// The host interface a host-device network would move in, as it is
    /// now; `None` when the host has no such interface.
    pub device: Option<crate::model::lan::SavedDevice>,
}

/// Ports a Linux bridge holds: port numbers have 10 bits, and 0 is
/// reserved.
pub const BRIDGE_PORT_LIMIT: usize = 1023;

pub fn find_network<'a>(state: &'a State, name: &str) -> Result<&'a Network> {
    state
        .networks
        .get(name)
        .ok_or_else(|| Rejection::no_such_network(name, state.networks.keys()))
}

fn family(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The subnet of `net` of the family of `addr`.
pub(super) fn subnet_for<'a>(net: &'a Network, addr: &IpAddr) -> Option<&'a Subnet> {
    net.subnets
        .iter()
        .find(|s| s.cidr.addr().is_ipv4() == addr.is_ipv4())
}

/// Checks `--ip` values against the network's subnets.
fn requested_addresses(net: &Network, ips: &[RequestedIp]) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips {
        let subnet = subnet_for(net, &ip.addr).ok_or_else(|| Rejection::NoSubnetOfFamily {
            value: ip.to_string(),
            network: net.name.clone(),
            family: family(ip.addr.is_ipv4()),
        })?;
        if let Some(p) = ip.prefix.filter(|p| *p != subnet.cidr.prefix_len()) {
            return Err(Rejection::PrefixMismatch {
                value: ip.to_string(),
                prefix: p,
                subnet: subnet.cidr,
                network: net.name.clone(),
            });
        }
        if out.iter().any(|o| o.is_ipv4() == ip.addr.is_ipv4()) {
            return Err(Rejection::TwoAddressesOfAFamily {
                value: ip.to_string(),
            });
        }
        out.push(ip.addr);
    }
    Ok(out)
}

/// Checks published ports against the network and against every port
/// already published on the host.
pub(super) fn published_ports(state: &State, net: &Network, wanted: &[PortMapping]) -> Result<()> {
    for (i, m) in wanted.iter().enumerate() {
        if let Some(ip) = m.host_ip {
            if ip.is_ipv6() && ip.is_loopback() {
                return Err(Rejection::PublishedOnIpv6Loopback {
                    mapping: m.to_string(),
                });
            }
            if subnet_for(net, &ip).is_none() {
                return Err(Rejection::PublishedFamilyMissing {
                    mapping: m.to_string(),
                    host_ip: ip,
                    family: family(ip.is_ipv4()),
                    network: net.name.clone(),
                });
            }
        }
        if let Some(mine) = wanted[..i].iter().find(|o| o.conflicts_with(m)) {
            return Err(Rejection::PortsOverlap {
                mine: mine.clone(),
                theirs: m.clone(),
            });
        }
        for other in state.networks.values() {
            for a in other.attachments.with_ports() {
                if let Some(theirs) = a.ports.iter().find(|p| p.conflicts_with(m)) {
                    return Err(Rejection::PortTaken {
                        mapping: m.clone(),
                        namespace: a.namespace.clone(),
                        network: other.name.clone(),
                        theirs: theirs.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Mappings whose host ports nsnet picks get the lowest free ones of the
/// ephemeral range: not published by anyone, by no other mapping of the
/// request, and with no host service listening. A picked mapping covers
/// every host address, so any mapping or listener of the protocol on a
/// port takes that port.
pub(super) fn pick_host_ports(
    state: &State,
    wanted: &[PortMapping],
    listeners: &[HostListener],
) -> Result<Vec<PortMapping>> {
    use crate::model::ports::AUTO_RANGE;
    use std::collections::HashSet;
    if !wanted.iter().any(|m| m.is_auto()) {
        return Ok(wanted.to_vec());
    }
    let mut taken: HashSet<(Protocol, u32)> = state
        .networks
        .values()
        .flat_map(|n| n.attachments.with_ports())
        .flat_map(|a| a.ports.iter())
        .chain(wanted.iter().filter(|m| !m.is_auto()))
        .flat_map(|m| m.host_ports().map(move |p| (m.protocol, p)))
        .chain(listeners.iter().map(|l| (l.protocol, u32::from(l.port))))
        .collect();
    let mut out = Vec::new();
    for m in wanted {
        if !m.is_auto() {
            out.push(m.clone());
            continue;
        }
        let free = |start: u16| {
            (0..m.count).all(|i| !taken.contains(&(m.protocol, u32::from(start) + u32::from(i))))
        };
        let start = (*AUTO_RANGE.start()..=AUTO_RANGE.end() - (m.count - 1))
            .find(|s| free(*s))
            .ok_or_else(|| Rejection::NoFreeHostPort { mapping: m.clone() })?;
        let picked = PortMapping {
            host_port: start,
            ..m.clone()
        };
        taken.extend(picked.host_ports().map(|p| (m.protocol, p)));
        out.push(picked);
    }
    Ok(out)
}

/// A published port must not silently take the traffic of a host service
/// that listens on it (Docker and podman refuse such mappings too).
pub(super) fn check_host_listeners(
    wanted: &[PortMapping],
    listeners: &[HostListener],
) -> Result<()> {
    for m in wanted {
        if let Some(l) = listeners.iter().find(|l| l.is_hijacked_by(m)) {
            return Err(Rejection::HostPortInUse {
                mapping: m.clone(),
                listener: l.clone(),
            });
        }
    }
    Ok(())
}

pub(crate) fn ipam_rejection(e: IpamError, net: &Network) -> Rejection {
    match e {
        IpamError::InUse { addr } => Rejection::AddressInUse {
            address: addr,
            network: net.name.clone(),
            holder: net
                .attachments
                .iter()
                .find(|a| a.addresses.iter().any(|n| n.addr() == addr))
                .map(|a| a.namespace.clone()),
        },
        IpamError::Exhausted { .. } | IpamError::RangeExhausted { .. } => {
            Rejection::PoolExhausted(e)
        }
        IpamError::Gateway { .. } => Rejection::AddressIsGateway(e),
        other => Rejection::Address(other),
    }
}

/// The attachment's addresses: those asked for, then one lease per subnet
/// of a family not asked for.
fn lease_addresses(state: &State, net: &Network, ips: &[RequestedIp]) -> Result<Vec<IpNet>> {
    let mut used = net.used_addresses();
    // Docker's IPAM hands out addresses of nsnet's pools before Docker
    // creates their endpoints.
    for pool in state.docker_pools.values() {
        if net.served_by(pool) {
            for a in pool.held() {
                used.insert(a);
            }
        }
    }
    let mut addresses = Vec::new();
    for addr in requested_addresses(net, ips)? {
        let subnet = subnet_for(net, &addr).expect("requested_addresses checked the family");
        ipam::check_requested(subnet, addr, &used).map_err(|e| ipam_rejection(e, net))?;
        used.insert(addr);
        addresses.push(IpNet::new(addr, subnet.cidr.prefix_len()).expect("valid prefix"));
    }
    for subnet in &net.subnets {
        let v4 = subnet.cidr.addr().is_ipv4();
        if addresses.iter().any(|a| a.addr().is_ipv4() == v4) {
            continue;
        }
        let addr = ipam::allocate(subnet, &used).map_err(|e| ipam_rejection(e, net))?;
        used.insert(addr);
        addresses.push(IpNet::new(addr, subnet.cidr.prefix_len()).expect("valid prefix"));
    }
    Ok(addresses)
}

/// Refuses what the record or the kernel already has under the names the
/// attachment would take.
fn check_free(state: &State, net: &Network, req: &ConnectRequest, facts: &NsFacts) -> Result<()> {
    let ns = &req.namespace;
    let ifname = req.ifname();
    if net.has_bridge() && net.attachments.len() >= BRIDGE_PORT_LIMIT {
        return Err(Rejection::BridgeFull {
            network: net.name.clone(),
            limit: BRIDGE_PORT_LIMIT,
            count: net.attachments.len(),
        });
    }
    if let Some(key) = &req.cni {
        if net.cni_attachment(key).is_some() {
            return Err(Rejection::CniAttachmentExists {
                container_id: key.container_id.clone(),
                ifname: key.ifname.clone(),
                network: net.name.clone(),
            });
        }
    }
    if net.attachment(ns).is_some() {
        return Err(Rejection::AlreadyConnected {
            namespace: ns.clone(),
            network: net.name.clone(),
        });
    }
    if let Some((other, a)) = state.attachments_of(ns).find(|(_, a)| a.ifname == ifname) {
        return Err(Rejection::IfnameOnOtherNetwork {
            namespace: ns.clone(),
            ifname: a.ifname.clone(),
            network: other.name.clone(),
        });
    }
    if facts.is_host {
        return Err(Rejection::HostNamespace {
            namespace: ns.to_string(),
        });
    }
    if !facts.exists && ns.name().is_none() {
        return Err(Rejection::NoSuchNamespace {
            namespace: ns.to_string(),
            suggestion: None,
        });
    }
    if facts.ifnames.iter().any(|i| i == ifname) {
        return Err(Rejection::IfnameTaken {
            namespace: ns.clone(),
            ifname: ifname.to_string(),
        });
    }
    Ok(())
}

/// The steps that make one attachment to a bridge in the kernel, once its
/// namespace exists: a veth pair, addresses, routes.
pub(crate) fn veth_steps(
    net: &Network,
    att: &Attachment,
    facts: &NsFacts,
    mac: Option<[u8; 6]>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    ops.push(Op::CreateVeth {
        host: att.host_ifname.clone(),
        peer: att.ifname.clone(),
        netns: att.namespace.clone(),
        bridge: net.bridge.clone(),
        mtu: net.mtu,
        mac,
        group: net.link_group,
        ipv6: net.subnet_v6().is_some(),
        handed: false,
    });
    if !att.ports.is_empty() {
        ops.push(Op::SetHairpin {
            ifname: att.host_ifname.clone(),
        });
    }
    if !net.icc && !facts.bridge_netfilter {
        ops.push(Op::SetPortIsolated {
            ifname: att.host_ifname.clone(),
        });
    }
    ops.extend(configure_inside(net, att, facts));
    ops
}

/// An attachment's interface configured inside its namespace: `lo` up,
/// the addresses, the interface up, and a default route via each
/// subnet's gateway (unless the network is internal, or the namespace
/// has one of that family).
pub(crate) fn configure_inside(net: &Network, att: &Attachment, facts: &NsFacts) -> Vec<Op> {
    let target = Target::Ns(att.namespace.clone());
    let mut ops = vec![Op::LinkUp {
        target: target.clone(),
        ifname: "lo".into(),
    }];
    for a in &att.addresses {
        ops.push(Op::AddAddress {
            target: target.clone(),
            ifname: att.ifname.clone(),
            addr: *a,
        });
    }
    ops.push(Op::LinkUp {
        target: target.clone(),
        ifname: att.ifname.clone(),
    });
    if !net.internal {
        // A namespace on several networks keeps the default route of the
        // first one, as with Docker; the others reach their own subnets only.
        for s in net
            .subnets
            .iter()
            .filter(|s| !facts.default_routes.contains(&s.cidr.addr().is_ipv4()))
        {
            ops.push(Op::AddDefaultRoute {
                target: target.clone(),
                ifname: att.ifname.clone(),
                gateway: s.gateway,
            });
        }
    }
    ops
}

/// Validates a request and plans the steps that make the attachment.
pub fn plan_connect(
    state: &State,
    req: &ConnectRequest,
    facts: &NsFacts,
) -> Result<(State, Vec<Op>)> {
    let mut new_state = state.clone();
    let ops = plan_connect_into(&mut new_state, req, facts)?;
    Ok((new_state, ops))
}

/// `plan_connect` that records the attachment in `state` itself (a
/// refused request leaves it untouched): no copy of a record that grows
/// with every attachment.
pub fn plan_connect_into(
    state: &mut State,
    req: &ConnectRequest,
    facts: &NsFacts,
) -> Result<Vec<Op>> {
    let net = find_network(state, &req.network)?;
    let ns = &req.namespace;
    let ifname = req.ifname().to_string();
    names::validate_ifname(&ifname)?;
    check_free(state, net, req, facts)?;
    if net.lan.is_some() {
        return lan_connect_into(state, req, facts);
    }
    let publish = pick_host_ports(state, &req.publish, &facts.host_listeners)?;
    published_ports(state, net, &publish)?;
    if !req.take_host_ports {
        check_host_listeners(&publish, &facts.host_listeners)?;
    }
    let host_ifname = names::host_veth_name(&net.name, &ns.to_string(), &ifname);
    if facts.host_ifnames.contains(&host_ifname) {
        return Err(Rejection::HostIfnameTaken {
            host_ifname,
            namespace: ns.clone(),
        });
    }
    let att = Attachment {
        host_ifname,
        addresses: lease_addresses(state, net, &req.ips)?,
        ports: publish,
        ..attachment_of(req, facts)
    };
    let mut ops = create_namespace(&att);
    ops.extend(super::driver::of(net.driver()).connect(net, &att, facts, req.mac));
    if facts.parked_host_end {
        ops.insert(
            0,
            Op::ClearParked {
                name: att.host_ifname.clone(),
            },
        );
    }
    Ok(record(state, req, att, ops))
}

/// Records `att` on its network in `state`; `ops`, and the resolv.conf
/// steps of its namespace after them.
fn record(state: &mut State, req: &ConnectRequest, att: Attachment, mut ops: Vec<Op>) -> Vec<Op> {
    state
        .networks
        .get_mut(&req.network)
        .expect("planned against it")
        .attachments
        .push(att.into());
    ops.extend(super::resolv_steps_for(state, [&req.namespace]));
    ops
}

/// The attachment `req` asks for, before its host end, addresses and
/// ports are known.
fn attachment_of(req: &ConnectRequest, facts: &NsFacts) -> Attachment {
    Attachment {
        namespace: req.namespace.clone(),
        namespace_created: !facts.exists,
        host_ifname: String::new(),
        ifname: req.ifname().to_string(),
        mac: req.mac.as_ref().map(names::format_mac),
        addresses: Vec::new(),
        ports: Vec::new(),
        owner: None,
        cni: req.cni.clone(),
        aliases: req.aliases.clone(),
        docker: None,
        device: None,
    }
}

/// The namespace nsnet makes for an attachment, if it does.
fn create_namespace(att: &Attachment) -> Vec<Op> {
    match (att.namespace_created, att.namespace.name()) {
        (true, Some(name)) => vec![Op::CreateNetns {
            name: name.to_string(),
        }],
        _ => Vec::new(),
    }
}

/// `plan_connect_into` for a network on the LAN: no host end, no ports,
/// addresses no one on the LAN answered for (or the host device's own).
fn lan_connect_into(state: &mut State, req: &ConnectRequest, facts: &NsFacts) -> Result<Vec<Op>> {
    use super::driver::lan;
    let net = find_network(state, &req.network)?;
    if !req.publish.is_empty() {
        return Err(Rejection::PublishOnLan {
            network: net.name.clone(),
            driver: match net.driver() {
                crate::model::DriverKind::HostDevice => "host-device",
                _ => "macvlan",
            },
        });
    }
    let device = lan::device_to_move(net, facts)?;
    let asked = requested_addresses(net, &req.ips)?;
    let att = Attachment {
        addresses: lan::lease(net, &asked, facts)?,
        device,
        ..attachment_of(req, facts)
    };
    let mut ops = create_namespace(&att);
    ops.extend(super::driver::of(net.driver()).connect(net, &att, facts, req.mac));
    Ok(record(state, req, att, ops))
}

/// Whether a leaving attachment's namespace goes with it (nsnet deletes
/// it in the same plan).
pub(crate) fn goes(a: &Attachment, doomed: &[String]) -> bool {
    a.namespace
        .name()
        .is_some_and(|n| doomed.iter().any(|d| d == n))
}

/// How the veths of leaving attachments go. The veths of namespaces that
/// go with them are only parked: the namespace's deletion takes them
/// along, asynchronously. The others are retired: deleted in the
/// background once their addresses are off. A veth handed to Docker goes
/// with its host end, wherever Docker put the other (back in the host
/// after a Leave, or in a container).
pub(crate) fn veth_removal(leaving: &[&Attachment], doomed: &[String]) -> Vec<Op> {
    let mut ops = Vec::new();
    let (handed, leaving_own): (Vec<&Attachment>, Vec<&Attachment>) =
        leaving.iter().partition(|a| a.docker.is_some());
    for a in &handed {
        ops.push(Op::DeleteLink {
            target: Target::Host,
            name: a.host_ifname.clone(),
        });
    }
    let (park, delete): (Vec<&Attachment>, Vec<&Attachment>) =
        leaving_own.iter().partition(|a| goes(a, doomed));
    let names = |v: &[&Attachment]| v.iter().map(|a| a.host_ifname.clone()).collect::<Vec<_>>();
    if !delete.is_empty() {
        ops.push(Op::RetireLinks {
            links: delete
                .iter()
                .map(|a| super::RetiredLink {
                    host_ifname: a.host_ifname.clone(),
                    netns: a.namespace.clone(),
                    ifname: a.ifname.clone(),
                    addresses: a.addresses.clone(),
                })
                .collect(),
        });
    }
    if !park.is_empty() {
        ops.push(Op::ParkLinks {
            names: names(&park),
        });
    }
    ops
}

/// Plans the removal of attachments of one network: all their host veths
/// in one batched deletion, then the namespaces nsnet created for them.
pub fn plan_disconnect(
    state: &State,
    network: &str,
    namespaces: &[NsRef],
) -> Result<(State, Vec<Op>)> {
    let net = find_network(state, network)?;
    let mut leaving: Vec<&Attachment> = Vec::new();
    for ns in namespaces {
        let att = net.attachment(ns).ok_or_else(|| {
            let connected: Vec<String> = net
                .attachments
                .iter()
                .map(|a| a.namespace.to_string())
                .collect();
            Rejection::NotConnected {
                namespace: ns.clone(),
                network: network.to_string(),
                suggestion: names::closest(&ns.to_string(), &connected),
            }
        })?;
        if leaving.iter().any(|a| &a.namespace == ns) {
            return Err(Rejection::ListedTwice {
                namespace: ns.clone(),
            });
        }
        leaving.push(att);
    }
    let mut new_state = state.clone();
    let mut doomed = Vec::new();
    for ns in namespaces {
        if new_state.detach(network, ns) {
            doomed.push(ns.name().expect("detach checked it is named").to_string());
        }
    }
    // Published ports go first, so that no new connection is sent to an
    // attachment on its way out.
    let mut ops: Vec<Op> = Op::firewall(state, &new_state).into_iter().collect();
    ops.extend(super::driver::of(net.driver()).disconnect(net, &leaving, &doomed));
    ops.extend(Op::forget_flows(leaving.iter().copied()));
    for name in doomed {
        ops.push(Op::DeleteNetns { name });
    }
    ops.extend(super::resolv_steps_for(&mut new_state, namespaces));
    Ok((new_state, ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_attachment, test_network};

    fn state() -> State {
        let mut s = State::default();
        s.networks.insert(
            "n".into(),
            test_network("n", "br-n", &["10.0.0.0/24", "fd00::/64"]),
        );
        s
    }

    fn req(ns: &str) -> ConnectRequest {
        ConnectRequest::new("n", NsRef::Named(ns.into()))
    }

    #[test]
    fn a_new_namespace_gets_every_step_and_a_lease_per_family() {
        let (s, ops) = plan_connect(&state(), &req("a"), &NsFacts::default()).unwrap();
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(steps[0], "create namespace a");
        assert!(steps[1].starts_with("create veth ve-a-"), "{steps:?}");
        assert_eq!(
            steps
                .iter()
                .filter(|s| s.starts_with("add default route"))
                .count(),
            2
        );
        let att = &s.networks["n"].attachments[0];
        assert_eq!(att.addresses[0].to_string(), "10.0.0.2/24");
        assert_eq!(att.addresses[1].to_string(), "fd00::2/64");
        assert!(att.namespace_created);
    }

    #[test]
    fn an_existing_namespace_with_a_default_route_keeps_it() {
        let facts = NsFacts {
            exists: true,
            default_routes: vec![true],
            ..Default::default()
        };
        let (s, ops) = plan_connect(&state(), &req("a"), &facts).unwrap();
        assert!(!ops.iter().any(|o| matches!(o, Op::CreateNetns { .. })));
        let routes: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(o, Op::AddDefaultRoute { .. }))
            .collect();
        assert_eq!(routes.len(), 1, "only the IPv6 default route is added");
        assert!(!s.networks["n"].attachments[0].namespace_created);
    }

    #[test]
    fn refusals_name_the_value_and_class() {
        let mut taken = state();
        let mut holder = test_attachment("h");
        holder.addresses = vec!["10.0.0.7/24".parse().unwrap()];
        taken
            .networks
            .get_mut("n")
            .unwrap()
            .attachments
            .push(holder.into());
        let facts_with_eth0 = NsFacts {
            exists: true,
            ifnames: vec!["eth0".into()],
            ..Default::default()
        };
        let cases: Vec<(ConnectRequest, NsFacts, &str, i32)> = vec![
            (
                ConnectRequest {
                    network: "nope".into(),
                    ..req("a")
                },
                NsFacts::default(),
                "network nope does not exist",
                3,
            ),
            (
                ConnectRequest::new("n", NsRef::Path("/proc/999999/ns/net".into())),
                NsFacts::default(),
                "does not exist",
                3,
            ),
            (
                req("a"),
                facts_with_eth0,
                "already has an interface named eth0",
                4,
            ),
            (
                ConnectRequest {
                    ips: vec!["10.0.0.7".parse().unwrap()],
                    ..req("a")
                },
                NsFacts::default(),
                "already in use on network n by namespace h",
                4,
            ),
            (
                ConnectRequest {
                    ips: vec!["10.0.0.8/16".parse().unwrap()],
                    ..req("a")
                },
                NsFacts::default(),
                "prefix /16 does not match",
                2,
            ),
            (
                ConnectRequest {
                    publish: vec!["[::1]:80:80".parse().unwrap()],
                    ..req("a")
                },
                NsFacts::default(),
                "::1",
                2,
            ),
            (
                ConnectRequest {
                    ifname: Some("x".repeat(16)),
                    ..req("a")
                },
                NsFacts::default(),
                "16 bytes",
                2,
            ),
        ];
        for (r, facts, needle, code) in cases {
            let e = plan_connect(&taken, &r, &facts).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }

    #[test]
    fn a_parked_host_end_is_cleared_and_a_kept_namespace_loses_its_veth() {
        let facts = NsFacts {
            parked_host_end: true,
            ..NsFacts::default()
        };
        let (s, ops) = plan_connect(&state(), &req("a"), &facts).unwrap();
        assert!(matches!(&ops[0], Op::ClearParked { name } if name.starts_with("ve-a-")));
        // A namespace nsnet did not create stays: its veth is deleted.
        let existing = NsFacts {
            exists: true,
            ..NsFacts::default()
        };
        let (s, _) = plan_connect(&s, &req("kept"), &existing).unwrap();
        let nss = [NsRef::Named("a".into()), NsRef::Named("kept".into())];
        let (_, ops) = plan_disconnect(&s, "n", &nss).unwrap();
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert!(
            matches!(&ops[0], Op::RetireLinks { links } if links.len() == 1 && links[0].host_ifname.starts_with("ve-kept-")),
            "{steps:?}"
        );
        assert!(
            matches!(&ops[1], Op::ParkLinks { names } if names.len() == 1 && names[0].starts_with("ve-a-")),
            "{steps:?}"
        );
        assert_eq!(steps[2], "delete namespace a");
        // Neither namespace is on a DNS network any more.
        assert_eq!(
            steps[3..],
            [
                "remove /etc/netns/a/resolv.conf",
                "remove /etc/netns/kept/resolv.conf"
            ],
            "{steps:?}"
        );
    }

    #[test]
    fn a_veth_made_again_in_the_same_plan_is_deleted_not_retired() {
        let existing = NsFacts {
            exists: true,
            ..NsFacts::default()
        };
        let (s, _) = plan_connect(&state(), &req("kept"), &existing).unwrap();
        let (_, mut ops) = plan_disconnect(&s, "n", &[NsRef::Named("kept".into())]).unwrap();
        let untouched = crate::plan::delete_what_is_made_again(&ops).into_owned();
        assert_eq!(
            untouched, ops,
            "nothing is made again: the retirement stays"
        );
        // A topology edit reconnects it in the same plan.
        let (mut after, _) = plan_disconnect(&s, "n", &[NsRef::Named("kept".into())]).unwrap();
        ops.extend(plan_connect_into(&mut after, &req("kept"), &existing).unwrap());
        let fixed = crate::plan::delete_what_is_made_again(&ops);
        assert!(
            matches!(&fixed[0], Op::DeleteLinks { names } if names[0].starts_with("ve-kept-")),
            "{fixed:?}"
        );
        assert!(!fixed.iter().any(|o| matches!(o, Op::RetireLinks { .. })));
    }

    #[test]
    fn a_full_bridge_is_refused_before_anything_is_made() {
        let mut s = state();
        let net = s.networks.get_mut("n").unwrap();
        for i in 0..BRIDGE_PORT_LIMIT {
            net.attachments
                .push(test_attachment(&format!("x{i}")).into());
        }
        let e = plan_connect(&s, &req("one-more"), &NsFacts::default()).unwrap_err();
        assert_eq!(e.exit_code(), 4);
        let text = e.to_string();
        assert!(
            text.contains("network n")
                && text.contains("1023")
                && text.contains("1023 are attached"),
            "{text}"
        );
        s.networks.get_mut("n").unwrap().attachments.pop();
        assert!(plan_connect(&s, &req("one-more"), &NsFacts::default()).is_ok());
    }

    #[test]
    fn disconnect_batches_links_and_deletes_created_namespaces() {
        let (s, _) = plan_connect(&state(), &req("a"), &NsFacts::default()).unwrap();
        let with_port = ConnectRequest {
            publish: vec!["8080:80".parse().unwrap()],
            ..req("b")
        };
        let (s, _) = plan_connect(&s, &with_port, &NsFacts::default()).unwrap();
        let nss = [NsRef::Named("a".into()), NsRef::Named("b".into())];
        let (after, ops) = plan_disconnect(&s, "n", &nss).unwrap();
        assert!(after.networks["n"].attachments.is_empty());
        assert!(matches!(&ops[0], Op::Firewall { .. }));
        // Both namespaces go: their veths are parked, the deletion of the
        // namespaces takes them along.
        assert!(matches!(&ops[1], Op::ParkLinks { names } if names.len() == 2));
        assert!(
            matches!(&ops[2], Op::ForgetFlows { addrs } if addrs.len() == 2),
            "the flows of b's published port are forgotten: {ops:?}"
        );
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::DeleteNetns { .. }))
                .count(),
            2
        );
        let e = plan_disconnect(&s, "n", &[nss[0].clone(), nss[0].clone()]).unwrap_err();
        assert!(matches!(e, Rejection::ListedTwice { .. }), "{e}");
        let e = plan_disconnect(&s, "n", &[NsRef::Named("zz".into())]).unwrap_err();
        assert_eq!(e.exit_code(), 3);
    }
}

//! Bridge networks: creation and removal. Planning (`plan_create`,
//! `plan_remove`) is pure over the recorded state and a few facts read from
//! the host, so it is unit-tested without root; `Nsnet` gathers the facts,
//! applies the plan and records the result.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{require_root, Error, Result};
use crate::ipam::{self, Subnet};
use crate::kernel::LiveKernel;
use crate::model::{Network, State};
use crate::netlink::{LinkInfo, LinkKind};
use crate::plan::{Op, Target};
use crate::{names, sysctl, Mode, Nsnet};

/// What a user asks for; every front end fills this in.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub subnets: Vec<String>,
    pub gateways: Vec<String>,
    pub bridge: Option<String>,
    pub internal: bool,
    pub no_masquerade: bool,
    pub no_isolate: bool,
    pub mtu: Option<u32>,
}

#[cfg(test)]
impl CreateRequest {
    /// A request with just a name and subnets, for unit tests.
    pub(crate) fn for_test(name: &str, subnets: &[&str]) -> CreateRequest {
        CreateRequest {
            name: name.into(),
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// What the host looks like, as far as creating a network cares.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The link that already carries the bridge's name, if any.
    pub existing_link: Option<LinkInfo>,
    /// Addresses already on that link.
    pub existing_addresses: Vec<IpNet>,
    /// Destinations of the host's routes (default routes left out).
    pub routes: Vec<IpNet>,
    /// Current values of the sysctls a network may need.
    pub sysctls: Vec<(String, String)>,
}

/// IPv6 needs links of at least this MTU (RFC 8200); the kernel disables
/// IPv6 on smaller ones.
const IPV6_MIN_MTU: u32 = 1280;
/// Smallest and largest MTU a bridge port can have.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// Parses a CIDR, insisting on a network address so that a typo such as
/// `172.16.1.0/16` is caught instead of silently widened.
pub fn parse_subnet(s: &str) -> Result<IpNet> {
    let net: IpNet = s.parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid subnet {s:?}: expected CIDR notation such as 172.16.0.0/16 or fd00::/64"
        ))
    })?;
    if net.trunc() != net {
        return Err(Error::Invalid(format!(
            "invalid subnet {s:?}: host bits are set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| Error::Invalid(format!("invalid {what} {s:?}: not an IPv4 or IPv6 address")))
}

/// The bridge name, checked.
pub fn bridge_name(req: &CreateRequest) -> Result<String> {
    match &req.bridge {
        Some(b) => {
            names::validate_ifname(b)?;
            Ok(b.clone())
        }
        None => names::validate_ifname(&req.name)
            .map(|_| req.name.clone())
            .map_err(|e| {
                Error::Invalid(format!(
                    "network name {:?} cannot be the bridge's name ({}); pass --bridge IFNAME",
                    req.name, e.reason
                ))
            }),
    }
}

/// Validates a request against the recorded state and the host; returns the
/// network to record and the steps that make it.
pub fn plan_create(
    state: &State,
    req: &CreateRequest,
    host: &HostFacts,
) -> Result<(State, Vec<Op>)> {
    names::validate_network_name(&req.name)?;
    if state.networks.contains_key(&req.name) {
        return Err(Error::Conflict(format!(
            "network {} already exists",
            req.name
        )));
    }
    let bridge = bridge_name(req)?;
    if let Some(other) = state.networks.values().find(|n| n.bridge == bridge) {
        return Err(Error::Conflict(format!(
            "bridge {bridge} already belongs to network {}",
            other.name
        )));
    }
    if let Some(mtu) = req.mtu {
        if !MTU_RANGE.contains(&mtu) {
            return Err(Error::Invalid(format!(
                "invalid MTU {mtu}: must be between {} and {}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            )));
        }
    }

    let mut cidrs = Vec::new();
    for s in &req.subnets {
        let net = parse_subnet(s)?;
        if cidrs
            .iter()
            .any(|c: &IpNet| c.addr().is_ipv4() == net.addr().is_ipv4())
        {
            return Err(Error::Invalid(format!(
                "subnet {net}: a network has at most one IPv4 and one IPv6 subnet"
            )));
        }
        cidrs.push(net);
    }
    if let (Some(mtu), true) = (req.mtu, cidrs.iter().any(|c| c.addr().is_ipv6())) {
        if mtu < IPV6_MIN_MTU {
            return Err(Error::Invalid(format!(
                "invalid MTU {mtu}: an IPv6 subnet needs at least {IPV6_MIN_MTU}"
            )));
        }
    }
    let others: Vec<(&str, IpNet)> = state
        .networks
        .values()
        .flat_map(|n| n.subnets.iter().map(move |s| (n.name.as_str(), s.cidr)))
        .collect();
    for c in &cidrs {
        if let Some((other, theirs)) = others.iter().find(|(_, t)| ipam::overlap(c, t)) {
            return Err(Error::Conflict(format!(
                "subnet {c} overlaps subnet {theirs} of network {other}"
            )));
        }
    }
    if cidrs.is_empty() {
        let taken: Vec<IpNet> = others
            .iter()
            .map(|(_, t)| *t)
            .chain(host.routes.iter().copied())
            .collect();
        let pick = ipam::pick_free_subnet(false, &taken).ok_or_else(|| {
            Error::Conflict("no free subnet left in nsnet's pools; pass --subnet".into())
        })?;
        cidrs.push(pick);
    }

    let mut subnets = Vec::new();
    for c in &cidrs {
        let gateway = match req
            .gateways
            .iter()
            .map(|g| parse_ip(g, "gateway"))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .find(|g| g.is_ipv4() == c.addr().is_ipv4())
        {
            Some(g) => {
                ipam::check_gateway(c, g)
                    .map_err(|e| Error::Invalid(format!("invalid gateway: {e}")))?;
                g
            }
            None => ipam::default_gateway(c).map_err(|e| Error::Invalid(e.to_string()))?,
        };
        subnets.push(Subnet { cidr: *c, gateway });
    }
    for g in &req.gateways {
        let g = parse_ip(g, "gateway")?;
        if !subnets.iter().any(|s| s.gateway == g) {
            return Err(Error::Invalid(format!(
                "gateway {g} belongs to no subnet of network {} (or there are two gateways of one family)",
                req.name
            )));
        }
    }

    let adopted = match &host.existing_link {
        Some(l) if l.kind == LinkKind::Bridge => true,
        Some(l) => {
            return Err(Error::Conflict(format!(
                "interface {} already exists and is not a bridge ({:?})",
                l.name, l.kind
            )))
        }
        None => false,
    };
    let mac = match &host.existing_link {
        Some(l) => l.mac.unwrap_or_default(),
        None => names::derived_mac(&[&req.name, &bridge]),
    };

    let mut network = Network {
        name: req.name.clone(),
        bridge: bridge.clone(),
        bridge_adopted: adopted,
        bridge_brought_up: host.existing_link.as_ref().is_some_and(|l| !l.up),
        bridge_mac: names::format_mac(&mac),
        subnets,
        preexisting_gateways: Vec::new(),
        bridge_sysctls: Default::default(),
        internal: req.internal,
        masquerade: !req.no_masquerade && !req.internal,
        isolate: !req.no_isolate,
        mtu: req.mtu,
        link_group: state.free_link_group(&req.name),
        attachments: Vec::new(),
        owner: None,
    };

    let mut ops = Vec::new();
    if !adopted {
        ops.push(Op::CreateBridge {
            name: bridge.clone(),
            mac,
            mtu: req.mtu,
            group: Some(network.link_group),
        });
        if network.subnet_v6().is_some() {
            // Without DAD the bridge's link-local address is usable at
            // once. While it is tentative (1-2 s) the kernel cannot send
            // neighbour solicitations for forwarded packets, and the first
            // IPv6 connections into the network are lost.
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key: sysctl::accept_dad(&bridge),
                value: "0".into(),
            });
        }
    }
    for s in &network.subnets {
        let addr = IpNet::new(s.gateway, s.cidr.prefix_len()).expect("prefix from a valid net");
        if host.existing_addresses.contains(&addr) {
            network.preexisting_gateways.push(s.gateway);
            continue;
        }
        ops.push(Op::AddAddress {
            target: Target::Host,
            ifname: bridge.clone(),
            addr,
        });
    }
    if adopted && mac != [0; 6] {
        // Pin the adopted bridge's MAC: otherwise it follows the lowest MAC
        // of its ports and changes as attachments come and go.
        ops.push(Op::SetMac {
            target: Target::Host,
            ifname: bridge.clone(),
            mac,
        });
    }
    if !adopted || network.bridge_brought_up {
        ops.push(Op::LinkUp {
            target: Target::Host,
            ifname: bridge.clone(),
        });
    }
    if network.subnet_v4().is_some() && !network.internal {
        let key = sysctl::route_localnet(&bridge);
        let current = host
            .sysctls
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone());
        if current.as_deref() != Some("1") {
            if let (true, Some(old)) = (adopted, current) {
                network.bridge_sysctls.insert(key.clone(), old);
            }
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key,
                value: "1".into(),
            });
        }
    }
    let mut new_state = state.clone();
    if network.forwards() {
        let mut keys = vec![sysctl::IPV4_FORWARD];
        if network.subnet_v6().is_some() {
            keys.push(sysctl::IPV6_FORWARD);
        }
        for key in keys {
            let current = host
                .sysctls
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone());
            if current.as_deref() != Some("1") {
                new_state
                    .sysctls
                    .entry(key.to_string())
                    .or_insert_with(|| current.unwrap_or_else(|| "0".into()));
                ops.push(Op::SetSysctl {
                    target: Target::Host,
                    key: key.to_string(),
                    value: "1".into(),
                });
            }
        }
    }
    new_state.networks.insert(network.name.clone(), network);
    ops.extend(Op::firewall(state, &new_state));
    Ok((new_state, ops))
}

/// The steps that remove a network (with its attachments when `force`),
/// and the state after it.
pub fn plan_remove(state: &State, name: &str, force: bool) -> Result<(State, Vec<Op>)> {
    let net = state
        .networks
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("network {name} does not exist")))?;
    if !net.attachments.is_empty() && !force {
        let list: Vec<String> = net
            .attachments
            .iter()
            .map(|a| a.namespace.to_string())
            .collect();
        return Err(Error::Conflict(format!(
            "network {name} is in use by {} attachment(s) ({}); disconnect them first or pass --force",
            list.len(),
            list.join(", ")
        )));
    }
    let mut new_state = state.clone();
    let mut ops = Vec::new();
    // The veths and a bridge nsnet created share one link group: one
    // request deletes them all, with one RCU grace period for the lot.
    let mut links: Vec<String> = net
        .attachments
        .iter()
        .map(|a| a.host_ifname.clone())
        .collect();
    if !net.bridge_adopted {
        links.push(net.bridge.clone());
    }
    if !links.is_empty() {
        ops.push(Op::DeleteLinkGroup {
            group: net.link_group,
            names: links,
        });
    }
    let published: Vec<std::net::IpAddr> = net
        .attachments
        .iter()
        .filter(|a| !a.ports.is_empty())
        .flat_map(|a| a.addresses.iter().map(|n| n.addr()))
        .collect();
    if !published.is_empty() {
        ops.push(Op::ForgetFlows { addrs: published });
    }
    for a in &net.attachments {
        if new_state.detach(name, &a.namespace) {
            ops.push(Op::DeleteNetns {
                name: a.namespace.name().expect("detach checked").to_string(),
            });
        }
    }
    new_state.networks.remove(name);
    if net.bridge_adopted {
        for (key, old) in &net.bridge_sysctls {
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key: key.clone(),
                value: old.clone(),
            });
        }
        if net.bridge_brought_up {
            ops.push(Op::LinkDown {
                target: Target::Host,
                ifname: net.bridge.clone(),
            });
        }
        for s in &net.subnets {
            if !net.preexisting_gateways.contains(&s.gateway) {
                ops.push(Op::DeleteAddress {
                    target: Target::Host,
                    ifname: net.bridge.clone(),
                    addr: IpNet::new(s.gateway, s.cidr.prefix_len()).expect("valid prefix"),
                });
            }
        }
    }
    ops.extend(Op::firewall(state, &new_state));
    ops.extend(restore_sysctls(&mut new_state));
    Ok((new_state, ops))
}

/// Puts back the sysctls nsnet changed once no network needs them.
pub(crate) fn restore_sysctls(state: &mut State) -> Vec<Op> {
    let need_v4 = state.networks.values().any(|n| n.forwards());
    let need_v6 = state
        .networks
        .values()
        .any(|n| n.forwards() && n.subnet_v6().is_some());
    let mut ops = Vec::new();
    for (key, needed) in [
        (sysctl::IPV4_FORWARD, need_v4),
        (sysctl::IPV6_FORWARD, need_v6),
    ] {
        if !needed {
            if let Some(old) = state.sysctls.remove(key) {
                ops.push(Op::SetSysctl {
                    target: Target::Host,
                    key: key.to_string(),
                    value: old,
                });
            }
        }
    }
    ops
}

impl Nsnet {
    pub fn create_network(&self, req: &CreateRequest) -> Result<Network> {
        require_root("create networks")?;
        let (lock, state) = self.begin()?;
        let mut kernel = LiveKernel::new();
        let facts = gather_facts(&mut kernel, req)?;
        let (new_state, ops) = plan_create(&state, req, &facts)?;
        self.commit(
            &lock,
            &state,
            &new_state,
            &ops,
            Mode::AllOrNothing,
            &mut kernel,
        )?;
        Ok(new_state.networks[&req.name].clone())
    }

    pub fn remove_network(&self, name: &str, force: bool) -> Result<Network> {
        require_root("remove networks")?;
        let (lock, state) = self.begin()?;
        let net = state.networks.get(name).cloned();
        let (new_state, ops) = plan_remove(&state, name, force)?;
        let mut kernel = LiveKernel::new();
        self.commit(
            &lock,
            &state,
            &new_state,
            &ops,
            Mode::KeepGoing,
            &mut kernel,
        )?;
        Ok(net.expect("plan_remove checked it exists"))
    }
}

pub(crate) fn gather_facts(kernel: &mut LiveKernel, req: &CreateRequest) -> Result<HostFacts> {
    let bridge = bridge_name(req)?;
    let host = kernel.host()?;
    let existing_link = host.link_by_name(&bridge)?;
    let existing_addresses = match &existing_link {
        Some(l) => host
            .addresses()?
            .into_iter()
            .filter(|a| a.index == l.index)
            .map(|a| a.addr)
            .collect(),
        None => Vec::new(),
    };
    let routes = if req.subnets.is_empty() {
        host.routes()?
            .into_iter()
            .map(|r| r.destination)
            .filter(|d| d.prefix_len() > 0)
            .collect()
    } else {
        Vec::new()
    };
    let mut keys = vec![
        sysctl::IPV4_FORWARD.to_string(),
        sysctl::IPV6_FORWARD.to_string(),
    ];
    if existing_link.is_some() {
        keys.push(sysctl::route_localnet(&bridge));
    }
    let sysctls = keys
        .into_iter()
        .filter_map(|k| sysctl::read(&k).ok().map(|v| (k, v)))
        .collect();
    Ok(HostFacts {
        existing_link,
        existing_addresses,
        routes,
        sysctls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, subnets: &[&str]) -> CreateRequest {
        CreateRequest::for_test(name, subnets)
    }

    fn facts() -> HostFacts {
        HostFacts {
            sysctls: vec![(sysctl::IPV4_FORWARD.into(), "0".into())],
            ..Default::default()
        }
    }

    #[test]
    fn tutorial_network_plan() {
        let (state, ops) = plan_create(
            &State::default(),
            &req("mydocker0", &["172.16.0.0/16"]),
            &facts(),
        )
        .unwrap();
        let net = &state.networks["mydocker0"];
        assert_eq!(state.sysctls[sysctl::IPV4_FORWARD], "0");
        assert_eq!(net.bridge, "mydocker0");
        assert_eq!(net.subnets[0].gateway.to_string(), "172.16.0.1");
        let steps: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            steps,
            [
                "create bridge mydocker0",
                "add address 172.16.0.1/16 to mydocker0 in host",
                "bring up mydocker0 in host",
                "set net/ipv4/conf/mydocker0/route_localnet = 1 in host",
                "set net/ipv4/ip_forward = 1 in host",
                "apply nftables table inet nsnet",
            ]
        );
    }

    #[test]
    fn bad_requests_are_refused_with_the_value() {
        let s = State::default();
        let f = facts();
        let cases: Vec<(CreateRequest, &str, i32)> = vec![
            (req("n", &["10.0.0.0/33"]), "\"10.0.0.0/33\"", 2),
            (req("n", &["::/129"]), "\"::/129\"", 2),
            (
                req("n", &["172.16.1.0/16"]),
                "did you mean 172.16.0.0/16",
                2,
            ),
            (
                req("n", &["10.0.0.0/24", "10.1.0.0/24"]),
                "at most one IPv4",
                2,
            ),
            (req("a-very-long-network-name", &[]), "pass --bridge", 2),
            (req("bad/name", &[]), "\"bad/name\"", 2),
            (
                CreateRequest {
                    gateways: vec!["10.9.0.1".into()],
                    ..req("n", &["10.0.0.0/24"])
                },
                "10.9.0.1",
                2,
            ),
            (
                CreateRequest {
                    gateways: vec!["10.0.0.255".into()],
                    ..req("n", &["10.0.0.0/24"])
                },
                "broadcast",
                2,
            ),
            (
                CreateRequest {
                    mtu: Some(10),
                    ..req("n", &["10.0.0.0/24"])
                },
                "MTU 10",
                2,
            ),
            (
                CreateRequest {
                    bridge: Some("x".repeat(16)),
                    ..req("n", &[])
                },
                "16 bytes",
                2,
            ),
        ];
        for (r, needle, code) in cases {
            let e = plan_create(&s, &r, &f).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }

    #[test]
    fn overlapping_subnets_conflict() {
        let (s, _) =
            plan_create(&State::default(), &req("a", &["172.16.0.0/16"]), &facts()).unwrap();
        let e = plan_create(&s, &req("b", &["172.16.5.0/24"]), &facts()).unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("network a"), "{e}");
        let e = plan_create(&s, &req("a", &["10.0.0.0/24"]), &facts()).unwrap_err();
        assert_eq!(e.exit_code(), 4);
    }

    #[test]
    fn automatic_subnet_avoids_host_routes_and_networks() {
        let f = HostFacts {
            routes: vec!["172.30.0.0/24".parse().unwrap()],
            ..facts()
        };
        let (s, _) = plan_create(&State::default(), &req("a", &[]), &f).unwrap();
        assert_eq!(s.networks["a"].subnets[0].cidr.to_string(), "172.30.1.0/24");
    }

    #[test]
    fn adopted_bridge_is_not_created_nor_deleted() {
        let f = HostFacts {
            existing_link: Some(LinkInfo {
                index: 5,
                name: "br0".into(),
                kind: LinkKind::Bridge,
                master: None,
                mac: Some([2, 0, 0, 0, 0, 9]),
                mtu: 1500,
                up: false,
                group: 0,
            }),
            ..facts()
        };
        let r = CreateRequest {
            bridge: Some("br0".into()),
            ..req("n", &["10.0.0.0/24"])
        };
        let (s, ops) = plan_create(&State::default(), &r, &f).unwrap();
        assert!(s.networks["n"].bridge_adopted);
        assert!(!ops.iter().any(|o| matches!(o, Op::CreateBridge { .. })));
        let (_, ops) = plan_remove(&s, "n", false).unwrap();
        assert!(!ops
            .iter()
            .any(|o| matches!(o, Op::DeleteLink { .. } | Op::DeleteLinkGroup { .. })));
        assert!(ops.iter().any(|o| matches!(o, Op::DeleteAddress { .. })));
    }

    #[test]
    fn removal_restores_sysctls_with_the_last_network() {
        let (s, _) = plan_create(&State::default(), &req("a", &["10.0.0.0/24"]), &facts()).unwrap();
        let (after, ops) = plan_remove(&s, "a", false).unwrap();
        assert!(after.sysctls.is_empty());
        assert!(ops.contains(&Op::SetSysctl {
            target: Target::Host,
            key: sysctl::IPV4_FORWARD.into(),
            value: "0".into()
        }));
    }
}

//! Planning networks: creation and removal, pure over the recorded state
//! and a few facts read from the host beforehand (`HostFacts`). What every
//! network has (a name, subnets, a gateway, forwarding, the firewall) is
//! planned here; what its driver makes is the driver's (`driver`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::driver;
use super::{Op, Target};
use crate::model::ipam::{self, Subnet};
use crate::model::{names, sysctl, CreateRequest, GatewayMode, Network, Rejection, State};

type Result<T> = std::result::Result<T, Rejection>;

/// A link that already carries the bridge's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingLink {
    pub name: String,
    /// Its kind as the kernel names it (`bridge`, `veth`, `dummy`, ...).
    pub kind: String,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
}

impl ExistingLink {
    pub fn is_bridge(&self) -> bool {
        self.kind == "bridge"
    }
}

/// What the host looks like, as far as creating a network cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    /// The link that already carries the bridge's name, if any.
    pub existing_link: Option<ExistingLink>,
    /// Addresses already on that link.
    pub existing_addresses: Vec<IpNet>,
    /// Destinations of the host's routes (default routes left out).
    pub routes: Vec<IpNet>,
    /// Current values of the sysctls a network may need.
    pub sysctls: Vec<(String, String)>,
    /// The host interface a LAN network would be on (macvlan's parent,
    /// host-device's device); `None` when the host has none of that name.
    pub lan_interface: Option<ExistingLink>,
    /// The kernel can make 802.1q VLAN interfaces.
    pub vlan_supported: bool,
    /// What probing the LAN found for the host's own macvlan interface.
    pub lan_probe: super::driver::lan::LanProbe,
}

impl HostFacts {
    pub(super) fn sysctl(&self, key: &str) -> Option<String> {
        self.sysctls
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

/// IPv6 needs links of at least this MTU (RFC 8200); the kernel disables
/// IPv6 on smaller ones.
const IPV6_MIN_MTU: u32 = 1280;
/// Smallest and largest MTU a bridge port can have.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// The bridge name, checked.
pub fn bridge_name(req: &CreateRequest) -> Result<String> {
    match &req.bridge {
        Some(b) => {
            names::validate_ifname(b)?;
            Ok(b.clone())
        }
        None => names::validate_ifname(&req.name)
            .map(|_| req.name.clone())
            .map_err(|e| Rejection::NetworkNameNotAnIfname {
                network: req.name.clone(),
                reason: e.reason,
            }),
    }
}

/// The gateway of subnet `cidr`: the one asked for, or the first host
/// address. The one place a gateway is computed.
pub fn gateway_for(cidr: &IpNet, asked: &[IpAddr]) -> Result<IpAddr> {
    match asked.iter().find(|g| g.is_ipv4() == cidr.addr().is_ipv4()) {
        Some(g) => {
            ipam::check_gateway(cidr, *g).map_err(Rejection::BadGateway)?;
            Ok(*g)
        }
        None => ipam::default_gateway(cidr).map_err(Rejection::Address),
    }
}

/// `isolated` is for internal networks, and for the whole network; trusted
/// interfaces are interface names.
fn check_modes(req: &CreateRequest) -> Result<()> {
    let modes = [req.gateway_mode, req.mode_v6()];
    if modes.contains(&GatewayMode::Isolated) {
        if !req.internal {
            return Err(Rejection::IsolatedNeedsInternal {
                network: req.name.clone(),
            });
        }
        if modes != [GatewayMode::Isolated; 2] {
            return Err(Rejection::IsolatedForOneFamily {
                network: req.name.clone(),
            });
        }
    }
    for ifname in &req.trusted_interfaces {
        names::validate_ifname(ifname)?;
    }
    Ok(())
}

fn check_mtu(req: &CreateRequest) -> Result<()> {
    let Some(mtu) = req.mtu else {
        return Ok(());
    };
    if !MTU_RANGE.contains(&mtu) {
        return Err(Rejection::MtuOutOfRange {
            mtu,
            min: *MTU_RANGE.start(),
            max: *MTU_RANGE.end(),
        });
    }
    if mtu < IPV6_MIN_MTU && req.subnets.iter().any(|c| c.addr().is_ipv6()) {
        return Err(Rejection::MtuTooSmallForIpv6 {
            mtu,
            min: IPV6_MIN_MTU,
        });
    }
    Ok(())
}

/// The network's subnets with their gateways: those asked for, or a free
/// private /24 that overlaps no network and no host route.
fn subnets_for(state: &State, req: &CreateRequest, host: &HostFacts) -> Result<Vec<Subnet>> {
    let mut cidrs: Vec<IpNet> = Vec::new();
    for net in &req.subnets {
        if cidrs
            .iter()
            .any(|c| c.addr().is_ipv4() == net.addr().is_ipv4())
        {
            return Err(Rejection::TwoSubnetsOfAFamily { subnet: *net });
        }
        cidrs.push(*net);
    }
    check_mtu(req)?;
    let others: Vec<(&str, IpNet)> = state
        .networks
        .values()
        .flat_map(|n| n.subnets.iter().map(move |s| (n.name.as_str(), s.cidr)))
        .collect();
    for c in &cidrs {
        if let Some((other, theirs)) = others.iter().find(|(_, t)| ipam::overlap(c, t)) {
            return Err(Rejection::SubnetOverlap {
                subnet: *c,
                theirs: *theirs,
                network: other.to_string(),
            });
        }
    }
    if cidrs.is_empty() && req.lan.is_none() {
        let taken: Vec<IpNet> = others
            .iter()
            .map(|(_, t)| *t)
            .chain(host.routes.iter().copied())
            .collect();
        cidrs.push(ipam::pick_free_subnet(false, &taken).ok_or(Rejection::NoFreeSubnet)?);
    }
    let subnets = cidrs
        .iter()
        .map(|c| {
            Ok(Subnet {
                cidr: *c,
                gateway: gateway_for(c, &req.gateways)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(g) = req
        .gateways
        .iter()
        .find(|g| !subnets.iter().any(|s| s.gateway == **g))
    {
        return Err(Rejection::GatewayOutsideSubnets {
            gateway: *g,
            network: req.name.clone(),
        });
    }
    Ok(subnets)
}

/// Forwarding, when the network forwards; the old values are recorded so
/// that the last network's removal puts them back.
fn forwarding_steps(network: &Network, host: &HostFacts, state: &mut State) -> Vec<Op> {
    if !network.forwards() {
        return Vec::new();
    }
    let mut keys = vec![sysctl::IPV4_FORWARD];
    if network.subnet_v6().is_some() {
        keys.push(sysctl::IPV6_FORWARD);
    }
    let mut ops = Vec::new();
    for key in keys {
        let current = host.sysctl(key);
        if current.as_deref() != Some("1") {
            state
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
    ops
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
        return Err(Rejection::NetworkExists {
            network: req.name.clone(),
        });
    }
    let bridge = match req.lan {
        Some(_) => String::new(),
        None => bridge_name(req)?,
    };
    if let Some(other) = state
        .networks
        .values()
        .find(|n| n.has_bridge() && n.bridge == bridge)
    {
        return Err(Rejection::BridgeTaken {
            bridge,
            network: other.name.clone(),
        });
    }
    let driver = driver::of(req.driver());
    driver.validate(state, req, host)?;
    check_modes(req)?;
    let subnets = subnets_for(state, req, host)?;
    let lan = driver::lan::lan_of(req, &subnets, host)?;
    let adopted = match &host.existing_link {
        _ if req.lan.is_some() => false,
        Some(l) if l.is_bridge() => true,
        Some(l) => {
            return Err(Rejection::NotABridge {
                ifname: l.name.clone(),
                kind: l.kind.clone(),
            })
        }
        None => false,
    };
    let mac = match &host.existing_link {
        Some(l) if req.lan.is_none() => l.mac.unwrap_or_default(),
        Some(_) => names::derived_mac(&[&req.name, &bridge]),
        None => names::derived_mac(&[&req.name, &bridge]),
    };
    let mut network = Network {
        name: req.name.clone(),
        bridge,
        bridge_adopted: adopted,
        bridge_brought_up: adopted && host.existing_link.as_ref().is_some_and(|l| !l.up),
        bridge_mac: names::format_mac(&mac),
        subnets,
        preexisting_gateways: Vec::new(),
        bridge_sysctls: Default::default(),
        internal: req.internal,
        masquerade: !req.internal && req.gateway_mode.masquerades() && req.lan.is_none(),
        gateway_mode: req.gateway_mode,
        gateway_mode_v6: req.mode_v6(),
        icc: req.icc,
        trusted_interfaces: req.trusted_interfaces.clone(),
        isolate: req.isolate,
        mtu: req.mtu,
        link_group: state.free_link_group(&req.name),
        attachments: Default::default(),
        owner: None,
        dns: req.serves_dns(),
        dns_domain: req.dns_domain.clone(),
        dns_servers: req.dns_servers.clone(),
        overlay: req.joined.clone(),
        docker: req
            .docker
            .as_ref()
            .map(|id| crate::model::docker::DockerNetwork {
                id: id.clone(),
                endpoints: Default::default(),
            }),
        netavark: req.netavark.clone(),
        lan,
    };
    let mut ops = driver.setup(&mut network, host, mac);
    let mut new_state = state.clone();
    ops.extend(forwarding_steps(&network, host, &mut new_state));
    new_state.networks.insert(network.name.clone(), network);
    ops.extend(Op::firewall(state, &new_state));
    Ok((new_state, ops))
}

/// The steps that remove a network (with its attachments when `force`),
/// and the state after it.
pub fn plan_remove(state: &State, name: &str, force: bool) -> Result<(State, Vec<Op>)> {
    let net = super::attach::find_network(state, name)?;
    if !net.attachments.is_empty() && !force {
        return Err(Rejection::NetworkInUse {
            network: name.to_string(),
            namespaces: net
                .attachments
                .iter()
                .map(|a| a.namespace.to_string())
                .collect(),
        });
    }
    let mut new_state = state.clone();
    let mut ops = Vec::new();
    let driver = driver::of(net.driver());
    let mut doomed = Vec::new();
    for a in &net.attachments {
        if new_state.detach(name, &a.namespace) {
            doomed.push(a.namespace.name().expect("detach checked").to_string());
        }
    }
    if !net.has_bridge() {
        // No host ends: the driver takes the interfaces away (a host
        // device goes back to the host before its namespace goes).
        let leaving: Vec<&crate::model::Attachment> =
            net.attachments.iter().map(AsRef::as_ref).collect();
        ops.extend(driver.disconnect(net, &leaving, &doomed));
    }
    // The veths and a bridge nsnet created share one link group: one
    // request deletes them all, with one RCU grace period for the lot.
    let mut links: Vec<String> = net
        .attachments
        .iter()
        .map(|a| a.host_ifname.clone())
        .filter(|n| !n.is_empty())
        .collect();
    links.extend(driver.links(net));
    if !links.is_empty() {
        ops.push(Op::DeleteLinkGroup {
            group: net.link_group,
            names: links,
        });
    }
    ops.extend(Op::forget_flows(net.attachments.iter().map(AsRef::as_ref)));
    ops.extend(doomed.into_iter().map(|name| Op::DeleteNetns { name }));
    new_state.networks.remove(name);
    ops.extend(driver.release(net));
    ops.extend(Op::firewall(state, &new_state));
    ops.extend(restore_sysctls(&mut new_state));
    ops.extend(super::resolv_steps(&mut new_state));
    Ok((new_state, ops))
}

/// Puts back the sysctls nsnet changed once no network needs them.
pub fn restore_sysctls(state: &mut State) -> Vec<Op> {
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

    /// Parses the way every front end does (`model::rejection`), then
    /// plans: a refusal from either stage.
    fn refusal(
        name: &str,
        subnets: &[&str],
        gateways: &[&str],
        edit: fn(&mut CreateRequest),
    ) -> Rejection {
        let parsed = (|| -> Result<CreateRequest> {
            let mut r = CreateRequest::named(name);
            for s in subnets {
                r.subnets.push(crate::model::rejection::parse_subnet(s)?);
            }
            for g in gateways {
                r.gateways
                    .push(crate::model::rejection::parse_ip(g, "gateway")?);
            }
            edit(&mut r);
            Ok(r)
        })();
        match parsed {
            Err(e) => e,
            Ok(r) => plan_create(&State::default(), &r, &facts()).unwrap_err(),
        }
    }

    #[test]
    fn bad_requests_are_refused_with_the_value() {
        let none: fn(&mut CreateRequest) = |_| {};
        let cases: Vec<(Rejection, &str, i32)> = vec![
            (
                refusal("n", &["10.0.0.0/33"], &[], none),
                "\"10.0.0.0/33\"",
                2,
            ),
            (refusal("n", &["::/129"], &[], none), "\"::/129\"", 2),
            (
                refusal("n", &["172.16.1.0/16"], &[], none),
                "did you mean 172.16.0.0/16",
                2,
            ),
            (
                refusal("n", &["10.0.0.0/24", "10.1.0.0/24"], &[], none),
                "at most one IPv4",
                2,
            ),
            (
                refusal("a-very-long-network-name", &[], &[], none),
                "pass --bridge",
                2,
            ),
            (refusal("bad/name", &[], &[], none), "\"bad/name\"", 2),
            (
                refusal("n", &["10.0.0.0/24"], &["10.9.0.1"], none),
                "10.9.0.1",
                2,
            ),
            (
                refusal("n", &["10.0.0.0/24"], &["10.0.0.255"], none),
                "broadcast",
                2,
            ),
            (
                refusal("n", &["10.0.0.0/24"], &["nope"], none),
                "\"nope\"",
                2,
            ),
            (
                refusal("n", &["10.0.0.0/24"], &[], |r| r.mtu = Some(10)),
                "MTU 10",
                2,
            ),
            (
                refusal("n", &["fd00::/64"], &[], |r| r.mtu = Some(1000)),
                "MTU 1000",
                2,
            ),
            (
                refusal("n", &[], &[], |r| r.bridge = Some("x".repeat(16))),
                "16 bytes",
                2,
            ),
        ];
        for (e, needle, code) in cases {
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }

    #[test]
    fn the_gateway_is_computed_in_one_place() {
        let c: IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(gateway_for(&c, &[]).unwrap().to_string(), "10.0.0.1");
        let asked: Vec<IpAddr> = vec!["fd00::9".parse().unwrap(), "10.0.0.9".parse().unwrap()];
        assert_eq!(gateway_for(&c, &asked).unwrap().to_string(), "10.0.0.9");
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
            existing_link: Some(ExistingLink {
                name: "br0".into(),
                kind: "bridge".into(),
                mac: Some([2, 0, 0, 0, 0, 9]),
                up: false,
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

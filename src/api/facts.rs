//! Gathering the facts plans need, through a `Probe`: the same code serves
//! the live machine and the fakes of the unit tests.

use crate::host::{NsState, Probe};
use crate::kernel::netlink::LinkKind;
use crate::model::lan::{Lan, LanRequest, SavedDevice, PROBE_BATCH};
use crate::model::ports::HostListener;
use crate::model::{names, sysctl, ConnectRequest, CreateRequest, Network};
use crate::plan::attach::NsFacts;
use crate::plan::driver::lan::{probe_candidates, probe_done, LanNeed, LanProbe};
use crate::plan::network::{bridge_name, ExistingLink, HostFacts};
use crate::plan::Target;

use super::Result;

/// What the kernel says about the namespace `req` attaches; `shared`:
/// what probing the LAN found for the whole command (`lan_probes`), when
/// the network is a macvlan network.
pub fn namespace_facts(
    probe: &mut dyn Probe,
    net: Option<&Network>,
    req: &ConnectRequest,
    shared: Option<&LanProbe>,
) -> Result<NsFacts> {
    let Some(net) = net else {
        return Ok(NsFacts::default());
    };
    let ns = &req.namespace;
    let state = probe.namespace_state(ns)?;
    let (exists, is_host) = (state != NsState::Missing, state == NsState::Host);
    if is_host {
        // Nothing more to learn: the plan refuses it.
        return Ok(NsFacts {
            exists,
            is_host,
            ..NsFacts::default()
        });
    }
    let (links, routes) = if exists {
        let inside = Target::Ns(ns.clone());
        (probe.links(&inside)?, probe.routes(&inside)?)
    } else {
        (Vec::new(), Vec::new())
    };
    if net.lan.is_some() {
        // No host end, no ports, no bridge: what is outside is the LAN's.
        let (ifnames, default_routes) = inside(links, &routes, |_| false);
        return Ok(NsFacts {
            exists,
            ifnames,
            default_routes,
            ..lan_facts(probe, Some(net), req, shared)?
        });
    }
    // Only the derived name matters: look it up instead of dumping every
    // host link, a list that grows with the number of attachments.
    let host_ifname = names::host_veth_name(&net.name, &ns.to_string(), req.ifname());
    let (host_ifnames, parked_host_end) = match probe.link(&Target::Host, &host_ifname)? {
        // Parked by a disconnect (recorded nowhere, in the parked group):
        // going with its old namespace.
        Some(l)
            if l.kind == LinkKind::Veth
                && l.group == crate::model::PARKED_LINK_GROUP
                && !net.attachments.iter().any(|a| a.host_ifname == l.name) =>
        {
            (Vec::new(), true)
        }
        Some(_) => (vec![host_ifname], false),
        None => (Vec::new(), false),
    };
    // The namespace end of a parked pair, and its routes, go with its host
    // end, which the plan deletes first.
    let going = |name: &str| parked_host_end && name == req.ifname();
    let (ifnames, default_routes) = inside(links, &routes, going);
    Ok(NsFacts {
        exists,
        is_host,
        host_listeners: host_listeners(probe, req)?,
        bridge_netfilter: bridge_netfilter(probe, net),
        ifnames,
        host_ifnames,
        parked_host_end,
        default_routes,
        ..NsFacts::default()
    })
}

/// The names of a namespace's interfaces and the families of its default
/// routes, leaving out the interface that is `going` and its routes.
fn inside(
    links: Vec<crate::kernel::netlink::LinkInfo>,
    routes: &[crate::kernel::netlink::RouteInfo],
    going: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<bool>) {
    let going_index = links.iter().find(|l| going(&l.name)).map(|l| l.index);
    let default_routes = routes
        .iter()
        .filter(|r| r.destination.prefix_len() == 0)
        .filter(|r| going_index.is_none() || r.oif != going_index)
        .map(|r| r.destination.addr().is_ipv4())
        .collect();
    let ifnames = links
        .into_iter()
        .map(|l| l.name)
        .filter(|n| !going(n))
        .collect();
    (ifnames, default_routes)
}

/// What a connect to a network on the LAN learns outside the namespace:
/// the host device to move, and who answers for the addresses it may take
/// (`shared`: what probing found for the whole command; nothing for other
/// networks).
pub fn lan_facts(
    probe: &mut dyn Probe,
    net: Option<&Network>,
    req: &ConnectRequest,
    shared: Option<&LanProbe>,
) -> Result<NsFacts> {
    let Some(net) = net else {
        return Ok(NsFacts::default());
    };
    let device = match &net.lan {
        Some(Lan::HostDevice(d)) => saved_device(probe, &d.device)?,
        _ => None,
    };
    let lan_probe = match shared {
        Some(p) => p.clone(),
        None => {
            let asked: Vec<std::net::IpAddr> = req.ips.iter().map(|r| r.addr).collect();
            probe_lan(probe, net, &LanNeed::of(net, [asked.as_slice()]))?
        }
    };
    Ok(NsFacts {
        device,
        lan_probe,
        ..NsFacts::default()
    })
}

/// A host interface as it is now: what moving it away loses.
fn saved_device(probe: &mut dyn Probe, name: &str) -> Result<Option<SavedDevice>> {
    let Some(link) = probe.link(&Target::Host, name)? else {
        return Ok(None);
    };
    let addresses = probe
        .addresses(&Target::Host)?
        .into_iter()
        .filter(|a| a.index == link.index)
        // The kernel makes the link-local address itself.
        .filter(|a| !matches!(a.addr, ipnet::IpNet::V6(n) if n.addr().segments()[0] == 0xfe80))
        .map(|a| a.addr)
        .collect();
    let routes = probe
        .routes(&Target::Host)?
        .into_iter()
        .filter(|r| r.oif == Some(link.index))
        .filter_map(|r| {
            Some(crate::model::lan::DeviceRoute {
                destination: r.destination,
                gateway: r.gateway?,
                protocol: Some(r.protocol),
                metric: r.metric,
            })
        })
        .collect();
    Ok(Some(SavedDevice {
        sysctls: probe.device_sysctls(&link.name),
        name: link.name,
        mac: link.mac.as_ref().map(names::format_mac),
        mtu: link.mtu,
        up: link.up,
        addresses,
        routes,
    }))
}

/// What probing the LAN of each macvlan network found for the connects
/// `reqs`: one probe (one wait) per network for all of them, instead of
/// one per connect.
pub fn lan_probes<'a>(
    probe: &mut dyn Probe,
    state: &crate::model::State,
    reqs: impl IntoIterator<Item = &'a ConnectRequest>,
) -> Result<std::collections::BTreeMap<String, LanProbe>> {
    let mut asked: std::collections::BTreeMap<&str, Vec<Vec<std::net::IpAddr>>> =
        Default::default();
    for req in reqs {
        let probed = state
            .networks
            .get(&req.network)
            .and_then(Network::macvlan)
            .is_some_and(|m| m.probe_ms > 0);
        if probed {
            let ips = req.ips.iter().map(|r| r.addr).collect();
            asked.entry(req.network.as_str()).or_default().push(ips);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, ips) in asked {
        let net = &state.networks[name];
        let need = LanNeed::of(net, ips.iter().map(Vec::as_slice));
        out.insert(name.to_string(), probe_lan(probe, net, &need)?);
    }
    Ok(out)
}

/// Probes the LAN of a macvlan network for the addresses connects may
/// take: those asked for and the lowest free ones, in batches until there
/// are enough free ones (or the pool is probed out).
fn probe_lan(probe: &mut dyn Probe, net: &Network, need: &LanNeed) -> Result<LanProbe> {
    let Some(m) = net.macvlan() else {
        return Ok(LanProbe::default());
    };
    if m.probe_ms == 0 {
        return Ok(LanProbe::default());
    }
    let wait = std::time::Duration::from_millis(u64::from(m.probe_ms));
    let mut out = LanProbe {
        probed: Some(Vec::new()),
        holders: Vec::new(),
    };
    loop {
        let fresh: Vec<std::net::IpAddr> = probe_candidates(net, need, &out.holders)
            .into_iter()
            .filter(|a| !out.probed.as_ref().is_some_and(|p| p.contains(a)))
            .collect();
        if fresh.is_empty() {
            return Ok(out);
        }
        let found = probe.lan_probe(&m.parent, &fresh, wait)?;
        out.probed.as_mut().expect("set above").extend(fresh);
        out.holders.extend(found);
        if probe_done(net, need, &out) {
            return Ok(out);
        }
    }
}

/// The host's listening sockets on the protocols `req` publishes (none
/// asked when it may take them anyway).
pub fn host_listeners(probe: &mut dyn Probe, req: &ConnectRequest) -> Result<Vec<HostListener>> {
    if req.take_host_ports {
        return Ok(Vec::new());
    }
    let mut protocols: Vec<_> = req.publish.iter().map(|m| m.protocol).collect();
    protocols.sort();
    protocols.dedup();
    let mut out = Vec::new();
    for p in protocols {
        out.extend(probe.host_listeners(p)?);
    }
    // Only a listener in the way of a mapping is named (that scans every
    // process's file descriptors).
    for l in &mut out {
        if req
            .publish
            .iter()
            .any(|m| !m.is_auto() && l.is_hijacked_by(m))
        {
            l.process = probe.socket_holder(l.inode);
        }
    }
    Ok(out)
}

/// Whether br_netfilter hands bridged frames of both families to the inet
/// hooks (asked only for `--no-icc` networks, the ones it matters to).
pub fn bridge_netfilter(probe: &mut dyn Probe, net: &Network) -> bool {
    let mut on = |key| probe.sysctl(key).as_deref() == Some("1");
    !net.icc && on(sysctl::BRIDGE_CALL_IPTABLES) && on(sysctl::BRIDGE_CALL_IP6TABLES)
}

/// A host link as creating a network sees it.
fn existing(l: crate::kernel::netlink::LinkInfo) -> ExistingLink {
    ExistingLink {
        name: l.name,
        kind: kind_name(&l.kind),
        mac: l.mac,
        up: l.up,
    }
}

fn kind_name(kind: &LinkKind) -> String {
    match kind {
        LinkKind::Bridge => "bridge".into(),
        LinkKind::Veth => "veth".into(),
        LinkKind::Loopback => "loopback".into(),
        LinkKind::Other(k) => k.clone(),
    }
}

/// What the host looks like, as far as creating the network of `req`
/// cares.
pub fn host_facts(probe: &mut dyn Probe, req: &CreateRequest) -> Result<HostFacts> {
    if let Some(lan) = &req.lan {
        return lan_host_facts(probe, req, lan);
    }
    let bridge = bridge_name(req)?;
    let link = probe.link(&Target::Host, &bridge)?;
    let existing_addresses = match &link {
        Some(l) => probe
            .addresses(&Target::Host)?
            .into_iter()
            .filter(|a| a.index == l.index)
            .map(|a| a.addr)
            .collect(),
        None => Vec::new(),
    };
    let routes = if req.subnets.is_empty() {
        probe
            .routes(&Target::Host)?
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
    if link.is_some() {
        keys.push(sysctl::route_localnet(&bridge));
    }
    let sysctls = keys
        .into_iter()
        .filter_map(|k| probe.sysctl(&k).map(|v| (k, v)))
        .collect();
    Ok(HostFacts {
        existing_link: link.map(existing),
        existing_addresses,
        routes,
        sysctls,
        ..HostFacts::default()
    })
}

/// What creating a network on the LAN needs to know: its host interface,
/// whether the kernel could make a missing VLAN parent, and who on the
/// LAN answers for the addresses the host's own interface may take.
fn lan_host_facts(
    probe: &mut dyn Probe,
    req: &CreateRequest,
    lan: &LanRequest,
) -> Result<HostFacts> {
    let name = lan.host_interface();
    let link = probe.link(&Target::Host, name)?;
    let vlan_supported = link.is_none()
        && crate::model::lan::vlan_parent(name).is_some()
        && probe.kind_supported("vlan")?;
    let mut lan_probe = LanProbe::default();
    if let (
        Some(_),
        LanRequest::Macvlan {
            host_access: true,
            probe_ms,
            ip_ranges,
            parent,
            ..
        },
    ) = (&link, lan)
    {
        if *probe_ms > 0 {
            let wait = std::time::Duration::from_millis(u64::from(*probe_ms));
            lan_probe = probe_host_addresses(probe, parent, req, ip_ranges, wait)?;
        }
    }
    Ok(HostFacts {
        lan_interface: link.map(existing),
        vlan_supported,
        lan_probe,
        ..HostFacts::default()
    })
}

/// Probes the LAN for the host's own address on each subnet of a new
/// macvlan network with host access: the lowest free ones, a batch at a
/// time, until one is free (or the pool is probed out), as connects do.
fn probe_host_addresses(
    probe: &mut dyn Probe,
    parent: &str,
    req: &CreateRequest,
    ip_ranges: &[ipnet::IpNet],
    wait: std::time::Duration,
) -> Result<LanProbe> {
    let mut out = LanProbe {
        probed: Some(Vec::new()),
        holders: Vec::new(),
    };
    for cidr in &req.subnets {
        let Ok(gateway) = crate::plan::network::gateway_for(cidr, &req.gateways) else {
            continue;
        };
        let subnet = crate::model::ipam::Subnet {
            cidr: *cidr,
            gateway,
        };
        let range = crate::model::lan::range_in(ip_ranges, cidr);
        let mut held = crate::model::ipam::Leases::default();
        loop {
            let batch = crate::model::ipam::free_addresses(&subnet, range, &held, PROBE_BATCH);
            if batch.is_empty() {
                break;
            }
            let found = probe.lan_probe(parent, &batch, wait)?;
            let one_free = batch.iter().any(|a| !found.iter().any(|h| h.address == *a));
            for h in &found {
                held.insert(h.address);
            }
            out.probed.as_mut().expect("set above").extend(batch);
            out.holders.extend(found);
            if one_free {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeProbe;
    use crate::kernel::netlink::{AddressInfo, LinkInfo, RouteInfo};
    use crate::model::{test_network, NsRef};

    fn link(index: u32, name: &str, kind: LinkKind) -> LinkInfo {
        LinkInfo {
            index,
            name: name.into(),
            kind,
            master: None,
            mac: Some([2, 0, 0, 0, 0, 9]),
            mtu: 1500,
            up: false,
            group: 0,
        }
    }

    #[test]
    fn a_host_device_is_recorded_with_what_a_move_loses() {
        let mut probe = FakeProbe::default();
        probe.add_link(&Target::Host, link(4, "dev0", LinkKind::Veth));
        probe.host.routes.push(RouteInfo {
            destination: "198.51.100.0/24".parse().unwrap(),
            gateway: Some("192.0.2.1".parse().unwrap()),
            oif: Some(4),
            protocol: libc::RTPROT_STATIC,
            metric: Some(50),
        });
        for (key, value) in [
            ("net/ipv6/conf/default/accept_ra", "1"),
            ("net/ipv6/conf/dev0/accept_ra", "2"),
            ("net/ipv4/conf/default/rp_filter", "0"),
            ("net/ipv4/conf/dev0/rp_filter", "0"),
            ("net/ipv4/conf/eth9/rp_filter", "2"),
        ] {
            probe.sysctls.insert(key.into(), value.into());
        }
        let saved = saved_device(&mut probe, "dev0").unwrap().unwrap();
        // Only its own settings, and only those off the defaults.
        assert_eq!(
            saved.sysctls.into_iter().collect::<Vec<_>>(),
            vec![("ipv6/conf/accept_ra".to_string(), "2".to_string())]
        );
        assert_eq!(saved.routes[0].protocol, Some(libc::RTPROT_STATIC));
        assert_eq!(saved.routes[0].metric, Some(50));
        assert_eq!(
            crate::kernel::sysctl::device_key("dev0", "ipv6/conf/accept_ra"),
            "net/ipv6/conf/dev0/accept_ra"
        );
    }

    #[test]
    fn an_existing_namespace_reports_its_interfaces_and_default_routes() {
        let net = test_network("n", "br-n", &["10.0.0.0/24"]);
        let ns = NsRef::Named("a".into());
        let mut probe = FakeProbe::default();
        probe.add_link(&Target::Ns(ns.clone()), link(1, "lo", LinkKind::Loopback));
        probe
            .namespaces
            .get_mut(&ns)
            .unwrap()
            .routes
            .push(RouteInfo {
                destination: "0.0.0.0/0".parse().unwrap(),
                gateway: None,
                oif: Some(1),
                protocol: libc::RTPROT_BOOT,
                metric: None,
            });
        let req = ConnectRequest::new("n", ns.clone());
        let host_end = names::host_veth_name("n", "a", "eth0");
        probe.add_link(&Target::Host, link(7, &host_end, LinkKind::Veth));
        let facts = namespace_facts(&mut probe, Some(&net), &req, None).unwrap();
        assert_eq!(
            facts,
            NsFacts {
                exists: true,
                is_host: false,
                bridge_netfilter: false,
                host_listeners: vec![],
                ifnames: vec!["lo".into()],
                host_ifnames: vec![host_end],
                parked_host_end: false,
                default_routes: vec![true],
                ..NsFacts::default()
            }
        );
        let missing = ConnectRequest::new("n", NsRef::Named("b".into()));
        assert!(
            !namespace_facts(&mut probe, Some(&net), &missing, None)
                .unwrap()
                .exists
        );
    }

    #[test]
    fn the_host_namespace_is_refused_before_anything_is_made() {
        let net = test_network("n", "br-n", &["10.0.0.0/24"]);
        let host = NsRef::Path("/proc/1/ns/net".into());
        let mut probe = FakeProbe {
            host_aliases: vec![host.clone()],
            ..FakeProbe::default()
        };
        let req = ConnectRequest::new("n", host);
        let facts = namespace_facts(&mut probe, Some(&net), &req, None).unwrap();
        assert!(facts.is_host);
        let state = crate::model::State {
            networks: [("n".to_string(), net.clone())].into(),
            ..Default::default()
        };
        let e = crate::plan::attach::plan_connect(&state, &req, &facts).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("host's network namespace"), "{e}");
    }

    #[test]
    fn an_existing_bridge_is_reported_for_adoption() {
        let mut probe = FakeProbe::default();
        probe.add_link(&Target::Host, link(5, "br0", LinkKind::Bridge));
        probe.host.addresses.push(AddressInfo {
            index: 5,
            addr: "10.0.0.1/24".parse().unwrap(),
        });
        probe
            .sysctls
            .insert(sysctl::IPV4_FORWARD.into(), "0".into());
        let req = CreateRequest {
            bridge: Some("br0".into()),
            ..CreateRequest::for_test("n", &["10.0.0.0/24"])
        };
        let facts = host_facts(&mut probe, &req).unwrap();
        let l = facts.existing_link.as_ref().unwrap();
        assert!(l.is_bridge() && !l.up);
        assert_eq!(
            facts.existing_addresses,
            vec!["10.0.0.1/24".parse().unwrap()]
        );
        assert_eq!(
            facts.sysctls,
            vec![(sysctl::IPV4_FORWARD.to_string(), "0".to_string())]
        );
        let (state, _) =
            crate::plan::network::plan_create(&Default::default(), &req, &facts).unwrap();
        assert!(state.networks["n"].bridge_adopted);
        assert_eq!(state.networks["n"].preexisting_gateways.len(), 1);
    }

    /// Machines on the LAN holding 192.0.2.`hosts`.
    fn holders(hosts: std::ops::RangeInclusive<u8>) -> Vec<crate::model::lan::LanHolder> {
        hosts
            .map(|i| crate::model::lan::LanHolder {
                address: format!("192.0.2.{i}").parse().unwrap(),
                mac: [2, 0, 0, 0, 0, i],
            })
            .collect()
    }

    #[test]
    fn the_hosts_own_address_is_probed_for_in_batches_too() {
        let mut probe = FakeProbe::default();
        probe.add_link(&Target::Host, link(2, "eth0", LinkKind::Veth));
        probe.lan_holders = holders(2..=9);
        let mut req = CreateRequest::for_test("home", &["192.0.2.0/24"]);
        req.lan = Some(LanRequest::Macvlan {
            parent: "eth0".into(),
            mode: Default::default(),
            ip_ranges: vec![],
            host_access: true,
            probe_ms: 200,
        });
        let facts = host_facts(&mut probe, &req).unwrap();
        assert_eq!(probe.lan_probes.len(), 2, "{:?}", probe.lan_probes);
        assert_eq!(probe.lan_probes[1][0].to_string(), "192.0.2.10");
        let (state, _) =
            crate::plan::network::plan_create(&Default::default(), &req, &facts).unwrap();
        let lan = state.networks["home"].macvlan().unwrap();
        let access = lan.host_access.as_ref().unwrap();
        assert_eq!(access.addresses[0].addr().to_string(), "192.0.2.10");
        // A range whose every address is held: probed out, then refused.
        req.lan = Some(LanRequest::Macvlan {
            parent: "eth0".into(),
            mode: Default::default(),
            ip_ranges: vec!["192.0.2.0/28".parse().unwrap()],
            host_access: true,
            probe_ms: 200,
        });
        probe.lan_holders = holders(1..=15);
        probe.lan_probes.clear();
        let facts = host_facts(&mut probe, &req).unwrap();
        assert_eq!(probe.lan_probes.len(), 2, "{:?}", probe.lan_probes);
        let e = crate::plan::network::plan_create(&Default::default(), &req, &facts).unwrap_err();
        assert!(
            matches!(e, crate::model::Rejection::LanPoolBusy { .. }),
            "{e}"
        );
    }

    #[test]
    fn the_lan_is_probed_in_batches_until_an_address_is_free() {
        let mut net = test_network("home", "", &["192.0.2.0/24"]);
        net.lan = Some(Lan::Macvlan(crate::model::lan::Macvlan {
            parent: "eth0".into(),
            mode: Default::default(),
            ip_ranges: vec![],
            host_access: None,
            probe_ms: 200,
        }));
        let mut probe = FakeProbe::default();
        probe.add_link(&Target::Host, link(2, "eth0", LinkKind::Veth));
        // The first batch (.2 to .9) is all taken on the LAN.
        probe.lan_holders = holders(2..=9);
        let req = ConnectRequest::new("home", NsRef::Named("a".into()));
        let facts = namespace_facts(&mut probe, Some(&net), &req, None).unwrap();
        assert_eq!(probe.lan_probes.len(), 2, "{:?}", probe.lan_probes);
        assert_eq!(probe.lan_probes[1][0].to_string(), "192.0.2.10");
        assert_eq!(facts.lan_probe.holders.len(), 8);
        let (s, _) = crate::plan::attach::plan_connect(
            &crate::model::State {
                networks: [("home".to_string(), net.clone())].into(),
                ..Default::default()
            },
            &req,
            &facts,
        )
        .unwrap();
        assert_eq!(
            s.networks["home"].attachments[0].addresses[0].to_string(),
            "192.0.2.10/24"
        );
        // An address asked for is probed alone; with probing off, nothing.
        let asked = ConnectRequest {
            ips: vec!["192.0.2.77".parse().unwrap()],
            ..req.clone()
        };
        namespace_facts(&mut probe, Some(&net), &asked, None).unwrap();
        assert_eq!(
            probe.lan_probes[2],
            ["192.0.2.77".parse::<std::net::IpAddr>().unwrap()]
        );
        // Three connects of one command: one probe, enough for all three.
        let reqs: Vec<ConnectRequest> = ["x", "y", "z"]
            .iter()
            .map(|n| ConnectRequest::new("home", NsRef::Named(n.to_string())))
            .collect();
        let state = crate::model::State {
            networks: [("home".to_string(), net.clone())].into(),
            ..Default::default()
        };
        let probed = lan_probes(&mut probe, &state, &reqs).unwrap();
        assert_eq!(probe.lan_probes.len(), 5, "{:?}", probe.lan_probes);
        assert_eq!(probe.lan_probes[3].len(), 10, "3 leases and a batch more");
        assert_eq!(
            probe.lan_probes[4][0].to_string(),
            "192.0.2.12",
            "the rest were taken"
        );
        let mut s = state.clone();
        for r in &reqs {
            let facts = namespace_facts(
                &mut probe,
                Some(&s.networks["home"].clone()),
                r,
                probed.get("home"),
            )
            .unwrap();
            crate::plan::attach::plan_connect_into(&mut s, r, &facts).unwrap();
        }
        assert_eq!(
            probe.lan_probes.len(),
            5,
            "the connects probed nothing more"
        );
        let got: Vec<String> = s.networks["home"]
            .attachments
            .iter()
            .map(|a| a.addresses[0].to_string())
            .collect();
        assert_eq!(got, ["192.0.2.10/24", "192.0.2.11/24", "192.0.2.12/24"]);
        if let Some(Lan::Macvlan(m)) = &mut net.lan {
            m.probe_ms = 0;
        }
        let facts = namespace_facts(&mut probe, Some(&net), &req, None).unwrap();
        assert_eq!((probe.lan_probes.len(), facts.lan_probe.probed), (5, None));
    }
}

//! Gathering the facts plans need, through a `Probe`: the same code serves
//! the live machine and the fakes of the unit tests.

use crate::host::{NsState, Probe};
use crate::kernel::netlink::LinkKind;
use crate::model::ports::HostListener;
use crate::model::{names, sysctl, ConnectRequest, CreateRequest, Network};
use crate::plan::attach::NsFacts;
use crate::plan::network::{bridge_name, ExistingLink, HostFacts};
use crate::plan::Target;

use super::Result;

/// What the kernel says about the namespace `req` attaches.
pub fn namespace_facts(
    probe: &mut dyn Probe,
    net: Option<&Network>,
    req: &ConnectRequest,
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
    Ok(NsFacts {
        exists,
        is_host,
        host_listeners: host_listeners(probe, req)?,
        bridge_netfilter: bridge_netfilter(probe, net),
        ifnames,
        host_ifnames,
        parked_host_end,
        default_routes,
    })
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
        existing_link: link.map(|l| ExistingLink {
            name: l.name,
            kind: kind_name(&l.kind),
            mac: l.mac,
            up: l.up,
        }),
        existing_addresses,
        routes,
        sysctls,
    })
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
            });
        let req = ConnectRequest::new("n", ns.clone());
        let host_end = names::host_veth_name("n", "a", "eth0");
        probe.add_link(&Target::Host, link(7, &host_end, LinkKind::Veth));
        let facts = namespace_facts(&mut probe, Some(&net), &req).unwrap();
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
            }
        );
        let missing = ConnectRequest::new("n", NsRef::Named("b".into()));
        assert!(
            !namespace_facts(&mut probe, Some(&net), &missing)
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
        let facts = namespace_facts(&mut probe, Some(&net), &req).unwrap();
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
}

//! Planning what Docker asks of nsnet as its network driver: endpoints
//! (addresses held from CreateEndpoint to DeleteEndpoint), joins (a veth
//! whose namespace end is handed to Docker, which moves it into the
//! container and configures it), published ports, leaves. Pure over the
//! record and the facts a front end gathered.

use std::path::PathBuf;

use ipnet::IpNet;

use super::attach::{
    check_host_listeners, ipam_rejection, pick_host_ports, published_ports, subnet_for,
    BRIDGE_PORT_LIMIT,
};
use super::Op;
use crate::model::docker::{handed_ifname, Endpoint};
use crate::model::ipam;
use crate::model::ports::{HostListener, PortMapping};
use crate::model::{names, Attachment, CreateRequest, Network, NsRef, Rejection, State};

type Result<T> = std::result::Result<T, Rejection>;

/// The network Docker knows by `id`.
pub fn find_docker_network<'a>(state: &'a State, id: &str) -> Result<&'a Network> {
    state
        .networks
        .values()
        .find(|n| n.docker.as_ref().is_some_and(|d| d.id == id))
        .ok_or_else(|| Rejection::NoSuchDockerNetwork { id: id.to_string() })
}

fn network_mut<'a>(state: &'a mut State, name: &str) -> &'a mut Network {
    state.networks.get_mut(name).expect("found before")
}

/// Records endpoint `endpoint` with the addresses Docker's IPAM gave it:
/// each must be in the network's subnet of its family and held by no one
/// else. The same endpoint again (a retry) changes nothing.
pub fn plan_create_endpoint(
    state: &State,
    id: &str,
    endpoint: &str,
    addresses: &[IpNet],
    mac: Option<String>,
) -> Result<State> {
    let net = find_docker_network(state, id)?;
    let wanted = Endpoint {
        addresses: addresses.to_vec(),
        mac,
    };
    let endpoints = &net.docker.as_ref().expect("a Docker network").endpoints;
    if endpoints.get(endpoint) == Some(&wanted) {
        return Ok(state.clone());
    }
    let mut used = net.used_addresses();
    for a in addresses {
        let subnet = subnet_for(net, &a.addr()).ok_or_else(|| Rejection::NoSubnetOfFamily {
            value: a.to_string(),
            network: net.name.clone(),
            family: if a.addr().is_ipv4() { "IPv4" } else { "IPv6" },
        })?;
        if a.prefix_len() != subnet.cidr.prefix_len() {
            return Err(Rejection::PrefixMismatch {
                value: a.to_string(),
                prefix: a.prefix_len(),
                subnet: subnet.cidr,
                network: net.name.clone(),
            });
        }
        ipam::check_requested(subnet, a.addr(), &used).map_err(|e| ipam_rejection(e, net))?;
        used.insert(a.addr());
    }
    let mut after = state.clone();
    let name = net.name.clone();
    let docker = network_mut(&mut after, &name).docker.as_mut();
    docker
        .expect("a Docker network")
        .endpoints
        .insert(endpoint.to_string(), wanted);
    Ok(after)
}

/// Forgets endpoint `endpoint`, leaving first if Docker did not. An
/// endpoint nsnet does not know (deleted already) changes nothing.
pub fn plan_delete_endpoint(state: &State, id: &str, endpoint: &str) -> Result<(State, Vec<Op>)> {
    let (mut after, mut ops) = plan_leave(state, id, endpoint)?;
    let net = find_docker_network(state, id)?;
    if net.macvlan().is_some() {
        // Docker moves a macvlan interface back to the host when it
        // releases the container's namespace, which may be after Leave:
        // by now it is there (as Docker's own macvlan driver counts on).
        let name = handed_ifname(endpoint)?;
        if !ops
            .iter()
            .any(|o| matches!(o, Op::DeleteLink { name: n, .. } if *n == name))
        {
            ops.push(Op::DeleteLink {
                target: crate::plan::Target::Host,
                name,
            });
        }
    }
    let name = net.name.clone();
    if let Some(d) = network_mut(&mut after, &name).docker.as_mut() {
        d.endpoints.remove(endpoint);
    }
    Ok((after, ops))
}

/// What the kernel says, for a join.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinFacts {
    /// Host links that already have the names the join would give.
    pub taken: Vec<String>,
    /// br_netfilter is on (see `attach::NsFacts::bridge_netfilter`).
    pub bridge_netfilter: bool,
}

/// The names of the veth of a join: host end, then the end handed over.
pub fn join_names(net: &Network, endpoint: &str, sandbox: &NsRef) -> Result<(String, String)> {
    let handed = handed_ifname(endpoint)?;
    let host = names::host_veth_name(&net.name, &sandbox.to_string(), &handed);
    Ok((host, handed))
}

/// Joins endpoint `endpoint` to the container whose namespace Docker will
/// have at `sandbox`: a veth, host end on the bridge, the other end left
/// in the host, down, for Docker to move in and configure (the namespace
/// need not exist yet).
pub fn plan_join(
    state: &State,
    id: &str,
    endpoint: &str,
    sandbox: PathBuf,
    facts: &JoinFacts,
) -> Result<(State, Vec<Op>)> {
    let net = find_docker_network(state, id)?;
    let ep = net
        .docker
        .as_ref()
        .expect("a Docker network")
        .endpoints
        .get(endpoint);
    let ep = ep.ok_or_else(|| Rejection::NoSuchEndpoint {
        endpoint: endpoint.to_string(),
        network: net.name.clone(),
    })?;
    let namespace = NsRef::Path(sandbox);
    if net.attachments.of_docker(endpoint).is_some() || net.attachment(&namespace).is_some() {
        return Err(Rejection::AlreadyConnected {
            namespace,
            network: net.name.clone(),
        });
    }
    if net.has_bridge() && net.attachments.len() >= BRIDGE_PORT_LIMIT {
        return Err(Rejection::BridgeFull {
            network: net.name.clone(),
            limit: BRIDGE_PORT_LIMIT,
            count: net.attachments.len(),
        });
    }
    let (host_ifname, ifname) = join_names(net, endpoint, &namespace)?;
    if let Some(taken) = facts
        .taken
        .iter()
        .find(|t| **t == host_ifname || **t == ifname)
    {
        return Err(Rejection::HostIfnameTaken {
            host_ifname: taken.clone(),
            namespace,
        });
    }
    let mac = ep.mac.as_deref().and_then(|m| names::parse_mac(m).ok());
    let att = Attachment {
        namespace: namespace.clone(),
        namespace_created: false,
        host_ifname,
        ifname,
        mac: ep.mac.clone(),
        addresses: ep.addresses.clone(),
        ports: Vec::new(),
        owner: None,
        cni: None,
        aliases: Vec::new(),
        docker: Some(endpoint.to_string()),
        device: None,
    };
    if let Some(m) = net.macvlan() {
        return Ok(join_macvlan(
            state,
            net,
            m,
            Attachment {
                host_ifname: String::new(),
                ..att
            },
            mac,
        ));
    }
    let mut ops = vec![Op::CreateVeth {
        host: att.host_ifname.clone(),
        peer: att.ifname.clone(),
        netns: namespace,
        bridge: net.bridge.clone(),
        mtu: net.mtu,
        mac,
        group: net.link_group,
        ipv6: net.subnet_v6().is_some(),
        handed: true,
    }];
    if !net.icc && !facts.bridge_netfilter {
        ops.push(Op::SetPortIsolated {
            ifname: att.host_ifname.clone(),
        });
    }
    let mut after = state.clone();
    let name = net.name.clone();
    network_mut(&mut after, &name).attachments.push(att.into());
    ops.extend(Op::firewall(state, &after));
    Ok((after, ops))
}

/// A join to a macvlan network: a macvlan interface on the parent, made
/// in the host for Docker to move into the container and configure (it
/// moves it back to the host on Leave, where it is deleted); the host's
/// route to it through its own interface, when it has one.
fn join_macvlan(
    state: &State,
    net: &Network,
    m: &crate::model::lan::Macvlan,
    att: Attachment,
    mac: Option<[u8; 6]>,
) -> (State, Vec<Op>) {
    use crate::plan::{LanOp, Target};
    let mut ops = vec![Op::Lan(LanOp::CreateMacvlan {
        netns: None,
        ifname: att.ifname.clone(),
        parent: m.parent.clone(),
        mode: m.mode,
        mtu: net.mtu,
        group: None,
    })];
    if let Some(mac) = mac {
        ops.push(Op::SetMac {
            target: Target::Host,
            ifname: att.ifname.clone(),
            mac,
        });
    }
    ops.extend(super::driver::lan::host_routes(net, &att.addresses));
    let mut after = state.clone();
    let name = net.name.clone();
    network_mut(&mut after, &name).attachments.push(att.into());
    (after, ops)
}

/// Ends the join of `endpoint`: its ports first, then the veth (Docker
/// moved the container's end back to the host under its old name; it
/// goes with the host end). Idempotent: no join, no change.
pub fn plan_leave(state: &State, id: &str, endpoint: &str) -> Result<(State, Vec<Op>)> {
    let net = find_docker_network(state, id)?;
    let Some(att) = net.attachments.of_docker(endpoint) else {
        return Ok((state.clone(), Vec::new()));
    };
    super::attach::plan_disconnect(state, &net.name, std::slice::from_ref(&att.namespace))
}

/// Publishes `ports` to the joined endpoint (ProgramExternalConnectivity),
/// replacing what it had: picked host ports, checked against every other
/// published port and host service.
pub fn plan_publish(
    state: &State,
    id: &str,
    endpoint: &str,
    ports: &[PortMapping],
    listeners: &[HostListener],
) -> Result<(State, Vec<Op>)> {
    let net = find_docker_network(state, id)?;
    let att = joined(net, endpoint)?.clone();
    if !net.has_bridge() {
        if ports.is_empty() {
            return Ok((state.clone(), Vec::new()));
        }
        return Err(Rejection::PublishOnLan {
            network: net.name.clone(),
            driver: "macvlan",
        });
    }
    let name = net.name.clone();
    let mut after = state.clone();
    set_ports(&mut after, &name, &att.namespace, Vec::new());
    let picked = pick_host_ports(&after, ports, listeners)?;
    published_ports(&after, &after.networks[&name], &picked)?;
    check_host_listeners(&picked, listeners)?;
    let hairpin = !picked.is_empty() && att.ports.is_empty();
    set_ports(&mut after, &name, &att.namespace, picked);
    let mut ops = Vec::new();
    if hairpin {
        ops.push(Op::SetHairpin {
            ifname: att.host_ifname.clone(),
        });
    }
    ops.extend(Op::firewall(state, &after));
    Ok((after, ops))
}

/// Withdraws the endpoint's published ports (RevokeExternalConnectivity).
/// Idempotent.
pub fn plan_unpublish(state: &State, id: &str, endpoint: &str) -> Result<(State, Vec<Op>)> {
    let net = find_docker_network(state, id)?;
    let Some(att) = net.attachments.of_docker(endpoint).cloned() else {
        return Ok((state.clone(), Vec::new()));
    };
    let mut after = state.clone();
    set_ports(&mut after, &net.name.clone(), &att.namespace, Vec::new());
    let mut ops: Vec<Op> = Op::firewall(state, &after).into_iter().collect();
    ops.extend(Op::forget_flows([&*att]));
    Ok((after, ops))
}

fn joined<'a>(net: &'a Network, endpoint: &str) -> Result<&'a Attachment> {
    net.attachments
        .of_docker(endpoint)
        .map(|a| &**a)
        .ok_or_else(|| Rejection::NoSuchEndpoint {
            endpoint: endpoint.to_string(),
            network: net.name.clone(),
        })
}

fn set_ports(state: &mut State, network: &str, ns: &NsRef, ports: Vec<PortMapping>) {
    let att = network_mut(state, network)
        .attachments
        .of_namespace_mut(ns)
        .expect("joined");
    std::sync::Arc::make_mut(att).ports = ports;
}

// Docker's IPAM (`--ipam-driver nsnet`): pools, then addresses of them.

/// A pool for Docker's IPAM: `asked` (refused when it overlaps a network
/// or another pool), or a free private subnet; its own addresses from
/// `range` (`--ip-range`, inside the subnet asked for). Recorded under
/// its ID (`Pool::id`).
pub fn plan_request_pool(
    state: &State,
    asked: Option<IpNet>,
    range: Option<IpNet>,
    v6: bool,
) -> Result<(State, IpNet)> {
    let taken: Vec<(String, IpNet)> = state
        .networks
        .values()
        .flat_map(|n| n.subnets.iter().map(|s| (n.name.clone(), s.cidr)))
        .chain(
            state
                .docker_pools
                .values()
                .map(|p| (format!("(Docker pool {})", p.cidr), p.cidr)),
        )
        .collect();
    let cidr = match asked {
        Some(c) => {
            if let Some((other, theirs)) = taken.iter().find(|(_, t)| ipam::overlap(&c, t)) {
                return Err(Rejection::SubnetOverlap {
                    subnet: c,
                    theirs: *theirs,
                    network: other.clone(),
                });
            }
            c
        }
        None => {
            let cidrs: Vec<IpNet> = taken.iter().map(|(_, t)| *t).collect();
            ipam::pick_free_subnet(v6, &cidrs).ok_or(Rejection::NoFreeSubnet)?
        }
    };
    if let Some(r) = range {
        if asked.is_none() || !cidr.contains(&r) {
            return Err(Rejection::RangeOutsideSubnet { range: r });
        }
    }
    let pool = crate::model::docker::Pool::new(cidr, range);
    let mut after = state.clone();
    after.docker_pools.insert(pool.id(), pool);
    Ok((after, cidr))
}

/// Records pool `id` again, as Docker kept it (see
/// `api::Nsnet::docker_restore_pool`). Idempotent.
pub fn plan_restore_pool(state: &State, id: &str) -> Result<State> {
    let (cidr, range) = crate::model::docker::Pool::parse_id(id)
        .ok_or_else(|| Rejection::NoSuchPool { id: id.to_string() })?;
    let mut after = state.clone();
    after
        .docker_pools
        .entry(id.to_string())
        .or_insert(crate::model::docker::Pool::new(cidr, range));
    Ok(after)
}

/// Docker's network request with the ranges (`--ip-range`) of the pools
/// that serve its subnets: a macvlan network probes and leases from them
/// (and shows them); an overlay, whose hosts each hand out addresses of
/// their own subnet, refuses them.
pub fn with_pool_ranges(state: &State, req: &CreateRequest) -> Result<CreateRequest> {
    let ranges: Vec<IpNet> = state
        .docker_pools
        .values()
        .filter(|p| req.subnets.contains(&p.cidr))
        .filter_map(|p| p.range)
        .collect();
    let mut req = req.clone();
    if ranges.is_empty() {
        return Ok(req);
    }
    if req.overlay.is_some() {
        return Err(Rejection::NotForDriver {
            option: "--ip-range",
            driver: "overlay",
        });
    }
    if let Some(crate::model::lan::LanRequest::Macvlan { ip_ranges, .. }) = &mut req.lan {
        for r in ranges {
            if !ip_ranges.contains(&r) {
                ip_ranges.push(r);
            }
        }
    }
    Ok(req)
}

/// Gives a pool back. Idempotent.
pub fn plan_release_pool(state: &State, id: &str) -> State {
    let mut after = state.clone();
    after.docker_pools.remove(id);
    after
}

fn pool<'a>(state: &'a State, id: &str) -> Result<&'a crate::model::docker::Pool> {
    state
        .docker_pools
        .get(id)
        .ok_or_else(|| Rejection::NoSuchPool { id: id.to_string() })
}

/// An address of pool `id`: `asked`, or the lowest free one; the
/// gateway's (`gateway`: the first host address unless asked). Free means
/// held by no one: not by the pool, nor by the network on its subnet.
/// The addresses a request for an address of pool `id` would probe on
/// the LAN, when the pool is a macvlan network's: its parent, how long a
/// probe waits (ms), and the address asked for or the lowest free ones.
pub fn lan_candidates(
    state: &State,
    id: &str,
    asked: Option<std::net::IpAddr>,
) -> Option<(String, u32, Vec<std::net::IpAddr>)> {
    let p = state.docker_pools.get(id)?;
    let net = state.networks.values().find(|n| n.served_by(p))?;
    let m = net.macvlan().filter(|m| m.probe_ms > 0)?;
    let held: Vec<crate::model::lan::LanHolder> = p
        .held()
        .map(|address| crate::model::lan::LanHolder {
            address,
            mac: [0; 6],
        })
        .collect();
    let mut need = super::driver::lan::LanNeed {
        asked: asked.into_iter().collect(),
        leases: [0; 2],
    };
    if need.asked.is_empty() {
        need.leases[usize::from(p.cidr.addr().is_ipv6())] = 1;
    }
    let candidates = super::driver::lan::probe_candidates(net, &need, &held);
    Some((m.parent.clone(), m.probe_ms, candidates))
}

pub fn plan_request_address(
    state: &State,
    id: &str,
    asked: Option<std::net::IpAddr>,
    gateway: bool,
    lan: &super::driver::lan::LanProbe,
) -> Result<(State, IpNet)> {
    let p = pool(state, id)?;
    let bad = |e: ipam::IpamError| Rejection::Address(e);
    let addr = if gateway {
        match asked {
            Some(a) => ipam::check_gateway(&p.cidr, a).map(|()| a),
            None => ipam::default_gateway(&p.cidr),
        }
        .map_err(Rejection::BadGateway)?
    } else {
        let net = state.networks.values().find(|n| n.served_by(p));
        let mut used = net.map(Network::used_addresses).unwrap_or_default();
        for a in p.held() {
            used.insert(a);
        }
        let subnet = match net.and_then(|n| n.overlay.as_ref().and(n.subnet_v4())) {
            // An overlay's pool is its cluster subnet: this host hands out
            // addresses of its own host subnet.
            Some(host) => host.clone(),
            None => ipam::Subnet {
                cidr: p.cidr,
                gateway: match p.gateway {
                    Some(g) => g,
                    None => ipam::default_gateway(&p.cidr).map_err(bad)?,
                },
            },
        };
        // Docker's own addresses come from the range; one asked for
        // (`--ip`) may be anywhere in the subnet, as with Docker's IPAM.
        let range = p.range.as_ref();
        let addr = match asked {
            Some(a) => {
                ipam::check_requested(&subnet, a, &used).map_err(bad)?;
                a
            }
            // On the LAN: the lowest address no one answered for.
            None if lan.probed.is_some() => super::driver::lan::pick(&subnet, range, &used, lan)
                .ok_or(Rejection::LanPoolBusy {
                    subnet: subnet.cidr,
                })?,
            None => match range {
                Some(r) => ipam::free_addresses(&subnet, Some(r), &used, 1)
                    .pop()
                    .ok_or(Rejection::PoolExhausted(ipam::IpamError::RangeExhausted {
                        range: *r,
                    }))?,
                None => ipam::allocate(&subnet, &used).map_err(bad)?,
            },
        };
        if let Some(h) = lan.holder(&addr) {
            return Err(Rejection::AddressOnLan {
                address: addr,
                network: net.map(|n| n.name.clone()).unwrap_or_default(),
                mac: names::format_mac(&h.mac),
            });
        }
        return Ok((
            held_by(state, id, addr),
            IpNet::new(addr, subnet.cidr.prefix_len()).expect("prefix of the subnet"),
        ));
    };
    let mut after = state.clone();
    after.docker_pools.get_mut(id).expect("found above").gateway = Some(addr);
    let net = IpNet::new(addr, p.cidr.prefix_len()).expect("prefix of the pool");
    Ok((after, net))
}

/// `state` with `addr` held by pool `id`.
fn held_by(state: &State, id: &str, addr: std::net::IpAddr) -> State {
    let mut after = state.clone();
    let pool = after.docker_pools.get_mut(id).expect("a pool");
    pool.addresses.insert(addr);
    after
}

/// Gives an address back. Idempotent.
pub fn plan_release_address(state: &State, id: &str, addr: std::net::IpAddr) -> State {
    let mut after = state.clone();
    if let Some(p) = after.docker_pools.get_mut(id) {
        if p.gateway == Some(addr) {
            p.gateway = None;
        }
        p.addresses.remove(&addr);
    }
    after
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::docker::DockerNetwork;
    use crate::model::test_network;
    use crate::plan::Target;

    const NET: &str = "0123456789abcdef0123456789abcdef";
    const EP: &str = "fedcba9876543210fedcba9876543210";

    fn state() -> State {
        let mut s = State::default();
        let mut net = test_network("dk-0123456789ab", "dk-0123456789ab", &["10.9.0.0/24"]);
        net.docker = Some(DockerNetwork {
            id: NET.into(),
            endpoints: Default::default(),
        });
        s.networks.insert(net.name.clone(), net);
        s
    }

    fn addr(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn with_endpoint() -> State {
        plan_create_endpoint(&state(), NET, EP, &[addr("10.9.0.5/24")], None).unwrap()
    }

    #[test]
    fn an_endpoint_holds_its_address() {
        let s = with_endpoint();
        let net = &s.networks["dk-0123456789ab"];
        assert!(net.used_addresses().contains(&"10.9.0.5".parse().unwrap()));
        // The same call again (a retry) is no change; another endpoint
        // cannot have the address.
        assert_eq!(
            plan_create_endpoint(&s, NET, EP, &[addr("10.9.0.5/24")], None).unwrap(),
            s
        );
        let e = plan_create_endpoint(&s, NET, "aa11bb22cc33dd44", &[addr("10.9.0.5/24")], None)
            .unwrap_err();
        assert!(e.to_string().contains("10.9.0.5"), "{e}");
    }

    #[test]
    fn bad_endpoints_are_refused_with_the_value() {
        let cases = [
            ("10.8.0.5/24", "10.8.0.5"),
            ("10.9.0.5/16", "/16"),
            ("fd00::5/64", "IPv6"),
            ("10.9.0.1/24", "10.9.0.1"),
        ];
        for (given, says) in cases {
            let e = plan_create_endpoint(&state(), NET, EP, &[addr(given)], None).unwrap_err();
            assert!(e.to_string().contains(says), "{given}: {e}");
        }
        let e = plan_create_endpoint(&state(), "ffffffffffffffff", EP, &[], None).unwrap_err();
        assert!(matches!(e, Rejection::NoSuchDockerNetwork { .. }), "{e}");
    }

    #[test]
    fn a_join_hands_the_peer_over_and_a_leave_undoes_it() {
        let sandbox = PathBuf::from("/run/docker/netns/abc");
        let (joined, ops) = plan_join(
            &with_endpoint(),
            NET,
            EP,
            sandbox.clone(),
            &JoinFacts::default(),
        )
        .unwrap();
        let att = joined.networks["dk-0123456789ab"]
            .attachments
            .of_docker(EP)
            .unwrap()
            .clone();
        assert_eq!(att.ifname, "dkcfedcba987654");
        assert_eq!(att.addresses, [addr("10.9.0.5/24")]);
        assert!(
            matches!(&ops[0], Op::CreateVeth { handed: true, peer, .. } if *peer == att.ifname)
        );
        let (left, ops) = plan_leave(&joined, NET, EP).unwrap();
        assert_eq!(left, with_endpoint());
        assert!(ops.contains(&Op::DeleteLink {
            target: Target::Host,
            name: att.host_ifname.clone()
        }));
        // Twice: no change, no steps.
        assert_eq!(plan_leave(&left, NET, EP).unwrap(), (left.clone(), vec![]));
        // Unknown endpoint: refused; taken names: refused.
        assert!(plan_join(&state(), NET, EP, sandbox.clone(), &JoinFacts::default()).is_err());
        let taken = JoinFacts {
            taken: vec![att.ifname.clone()],
            ..JoinFacts::default()
        };
        assert!(plan_join(&with_endpoint(), NET, EP, sandbox, &taken).is_err());
    }

    #[test]
    fn ports_are_published_checked_and_withdrawn() {
        let sandbox = PathBuf::from("/run/docker/netns/abc");
        let (s, _) = plan_join(&with_endpoint(), NET, EP, sandbox, &JoinFacts::default()).unwrap();
        let p: PortMapping = "8080:80".parse().unwrap();
        let (published, ops) = plan_publish(&s, NET, EP, std::slice::from_ref(&p), &[]).unwrap();
        assert!(ops.iter().any(|o| matches!(o, Op::SetHairpin { .. })));
        let att = published.networks["dk-0123456789ab"]
            .attachments
            .of_docker(EP)
            .unwrap();
        assert_eq!(att.ports, std::slice::from_ref(&p));
        // Publishing the same again replaces, it does not conflict with itself.
        assert!(plan_publish(&published, NET, EP, &[p], &[]).is_ok());
        let (withdrawn, _) = plan_unpublish(&published, NET, EP).unwrap();
        assert_eq!(withdrawn, s);
        let (gone, _) = plan_delete_endpoint(&published, NET, EP).unwrap();
        assert_eq!(gone, state());
    }

    #[test]
    fn pools_hand_out_each_address_once_and_refuse_overlaps() {
        let (s, cidr) =
            plan_request_pool(&State::default(), Some(addr("10.7.0.0/24")), None, false).unwrap();
        let id = cidr.to_string();
        let (s, gw) = plan_request_address(&s, &id, None, true, &Default::default()).unwrap();
        assert_eq!(gw, addr("10.7.0.1/24"));
        let (s, a) = plan_request_address(&s, &id, None, false, &Default::default()).unwrap();
        let (s, b) = plan_request_address(&s, &id, None, false, &Default::default()).unwrap();
        assert_eq!((a, b), (addr("10.7.0.2/24"), addr("10.7.0.3/24")));
        let e =
            plan_request_address(&s, &id, Some(a.addr()), false, &Default::default()).unwrap_err();
        assert!(e.to_string().contains("10.7.0.2"), "{e}");
        assert!(plan_request_address(
            &s,
            &id,
            Some("10.8.0.9".parse().unwrap()),
            false,
            &Default::default()
        )
        .is_err());
        let e = plan_request_pool(&s, Some(addr("10.7.0.0/16")), None, false).unwrap_err();
        assert!(matches!(e, Rejection::SubnetOverlap { .. }), "{e}");
        // nsnet's own connect does not take what the pool handed out.
        let mut with_net = s.clone();
        let net = test_network("n", "n", &["10.7.0.0/24"]);
        with_net.networks.insert("n".into(), net);
        let got = lease_free(&with_net);
        assert_eq!(got, "10.7.0.4/24");
        let s = plan_release_address(&s, &id, a.addr());
        let (_, again) = plan_request_address(&s, &id, None, false, &Default::default()).unwrap();
        assert_eq!(again, a);
        assert!(plan_release_pool(&s, &id).docker_pools.is_empty());
        // No pool asked: a free one.
        let (_, picked) = plan_request_pool(&State::default(), None, None, false).unwrap();
        assert!(picked.addr().is_ipv4());
    }

    #[test]
    fn a_pool_s_range_holds_docker_s_own_addresses() {
        let none = &Default::default();
        let (s, cidr) = ranged_pool("10.7.0.0/24", "10.7.0.248/30");
        let id = "10.7.0.0/24/10.7.0.248/30";
        assert_eq!(cidr, addr("10.7.0.0/24"));
        assert_eq!(s.docker_pools[id].id(), id);
        // The gateway and an address asked for may lie outside the range.
        let (s, gw) = plan_request_address(&s, id, None, true, none).unwrap();
        assert_eq!(gw, addr("10.7.0.1/24"));
        let asked = Some("10.7.0.9".parse().unwrap());
        let (s, a) = plan_request_address(&s, id, asked, false, none).unwrap();
        assert_eq!(a, addr("10.7.0.9/24"));
        let mut s = s;
        for want in [
            "10.7.0.248/24",
            "10.7.0.249/24",
            "10.7.0.250/24",
            "10.7.0.251/24",
        ] {
            let (after, got) = plan_request_address(&s, id, None, false, none).unwrap();
            assert_eq!(got, addr(want));
            s = after;
        }
        let e = plan_request_address(&s, id, None, false, none).unwrap_err();
        assert!(e.to_string().contains("--ip-range 10.7.0.248/30"), "{e}");
        // Outside the subnet, or without one: refused, naming the range.
        for (asked, range) in [(Some("10.7.0.0/24"), "10.8.0.0/25"), (None, "10.7.0.0/25")] {
            let e = plan_request_pool(&State::default(), asked.map(addr), Some(addr(range)), false)
                .unwrap_err();
            assert!(matches!(e, Rejection::RangeOutsideSubnet { .. }), "{e}");
            assert!(e.to_string().contains(range), "{e}");
        }
        // A record lost: the pool comes back, range and all, from its ID.
        let again = plan_restore_pool(&State::default(), id).unwrap();
        assert_eq!(again.docker_pools[id].range, Some(addr("10.7.0.248/30")));
        assert!(plan_restore_pool(&State::default(), "10.7.0.0").is_err());
    }

    #[test]
    fn a_macvlan_network_takes_its_pool_s_range_and_an_overlay_refuses_it() {
        let (s, _) = ranged_pool("192.0.2.0/24", "192.0.2.64/26");
        let mut req = CreateRequest::named("home");
        req.subnets = vec![addr("192.0.2.0/24")];
        assert_eq!(
            with_pool_ranges(&s, &req).unwrap(),
            req,
            "a bridge: the pool's"
        );
        req.lan = Some(crate::model::lan::LanRequest::Macvlan {
            parent: "lan0".into(),
            mode: crate::model::lan::MacvlanMode::Bridge,
            ip_ranges: vec![],
            host_access: false,
            probe_ms: 200,
        });
        let got = with_pool_ranges(&s, &req).unwrap();
        let Some(crate::model::lan::LanRequest::Macvlan { ip_ranges, .. }) = got.lan else {
            panic!("macvlan")
        };
        assert_eq!(ip_ranges, vec![addr("192.0.2.64/26")]);
        let mut overlay = CreateRequest::named("lab");
        overlay.subnets = req.subnets.clone();
        let opts =
            crate::model::overlay::OverlayOptions::defaults(vec!["http://192.0.2.9:2379".into()]);
        overlay.overlay =
            Some(crate::model::overlay::OverlayRequest::new("lab", &req.subnets, opts).unwrap());
        let e = with_pool_ranges(&s, &overlay).unwrap_err();
        assert!(e.to_string().contains("--ip-range"), "{e}");
    }

    /// A pool of `cidr` asked for with `--ip-range range`.
    fn ranged_pool(cidr: &str, range: &str) -> (State, IpNet) {
        plan_request_pool(
            &State::default(),
            Some(addr(cidr)),
            Some(addr(range)),
            false,
        )
        .unwrap()
    }

    fn lease_free(state: &State) -> String {
        let req = crate::model::ConnectRequest::new("n", NsRef::Named("a".into()));
        let mut s = state.clone();
        let facts = super::super::attach::NsFacts::default();
        super::super::attach::plan_connect_into(&mut s, &req, &facts).unwrap();
        s.networks["n"].attachments.iter().next().unwrap().addresses[0].to_string()
    }
}

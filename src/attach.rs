//! Attachments: a veth pair from a namespace to a network's bridge, with
//! addresses, `lo` up and a default route via the gateway.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{require_root, Error, Result};
use crate::ipam::{self, IpamError};
use crate::kernel::LiveKernel;
use crate::model::{Attachment, Network, State};
use crate::netns::{self, NsRef};
use crate::plan::{self, Op, Target};
use crate::ports::PortMapping;
use crate::{names, Mode, Nsnet};

/// The interface name inside the namespace when none is given.
pub const DEFAULT_IFNAME: &str = "eth0";

#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    pub network: String,
    pub namespace: String,
    /// Addresses, with or without prefix; at most one per family.
    pub ips: Vec<String>,
    pub ifname: Option<String>,
    pub mac: Option<String>,
    /// Published ports, `[HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO]`.
    pub publish: Vec<String>,
    /// Set when a CNI runtime asks: how it names the attachment.
    pub cni: Option<crate::model::CniKey>,
}

/// What the kernel says about the namespace being attached.
#[derive(Debug, Clone, Default)]
pub struct NsFacts {
    pub exists: bool,
    /// Interface names already inside it.
    pub ifnames: Vec<String>,
    /// Host interface names in use.
    pub host_ifnames: Vec<String>,
    /// Families (true = IPv4) that already have a default route inside.
    pub default_routes: Vec<bool>,
}

fn find_network<'a>(state: &'a State, name: &str) -> Result<&'a Network> {
    state
        .networks
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("network {name} does not exist")))
}

/// Parses `--ip` values: an address, or an address with the subnet's prefix.
fn requested_addresses(net: &Network, ips: &[String]) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for s in ips {
        let (addr, prefix) = match s.parse::<IpNet>() {
            Ok(n) => (n.addr(), Some(n.prefix_len())),
            Err(_) => (
                s.parse::<IpAddr>().map_err(|_| {
                    Error::Invalid(format!(
                        "invalid address {s:?}: expected an address like 172.16.1.1 or 172.16.1.1/16"
                    ))
                })?,
                None,
            ),
        };
        let subnet = net
            .subnets
            .iter()
            .find(|sub| sub.cidr.addr().is_ipv4() == addr.is_ipv4())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "address {s}: network {} has no {} subnet",
                    net.name,
                    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                ))
            })?;
        if let Some(p) = prefix {
            if p != subnet.cidr.prefix_len() {
                return Err(Error::Invalid(format!(
                    "address {s}: prefix /{p} does not match subnet {} of network {}",
                    subnet.cidr, net.name
                )));
            }
        }
        if out.iter().any(|o| o.is_ipv4() == addr.is_ipv4()) {
            return Err(Error::Invalid(format!(
                "address {s}: at most one address per family per attachment"
            )));
        }
        out.push(addr);
    }
    Ok(out)
}

/// Parses and checks published ports against the network and against every
/// port already published on the host.
fn published_ports(state: &State, net: &Network, specs: &[String]) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for spec in specs {
        let m: PortMapping = spec
            .parse()
            .map_err(|e: crate::ports::PortError| Error::Invalid(e.to_string()))?;
        if let Some(ip) = m.host_ip {
            if ip.is_ipv6() && ip.is_loopback() {
                // IPv6 has no route_localnet: after DNAT, a packet from ::1
                // may not leave the loopback device, so the kernel cannot
                // forward such a port (Docker needs a userland proxy).
                return Err(Error::Invalid(format!(
                    "invalid published port {spec:?}: the kernel cannot forward ports published on ::1 \
                     (IPv6 has no route_localnet); publish on 127.0.0.1 or on a host address"
                )));
            }
            if !net
                .subnets
                .iter()
                .any(|s| s.cidr.addr().is_ipv4() == ip.is_ipv4())
            {
                return Err(Error::Invalid(format!(
                    "invalid published port {spec:?}: host address {ip} is {} but network {} has no {} subnet",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                    net.name,
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                )));
            }
        }
        if let Some(mine) = out.iter().find(|o| o.conflicts_with(&m)) {
            return Err(Error::Conflict(format!(
                "published ports {mine} and {m} overlap"
            )));
        }
        for other in state.networks.values() {
            for a in &other.attachments {
                if let Some(theirs) = a.ports.iter().find(|p| p.conflicts_with(&m)) {
                    return Err(Error::Conflict(format!(
                        "host port {}/{} is already published by namespace {} on network {} ({theirs})",
                        m.protocol, m.host_port, a.namespace, other.name
                    )));
                }
            }
        }
        out.push(m);
    }
    Ok(out)
}

fn ipam_error(e: IpamError, net: &Network) -> Error {
    match e {
        IpamError::InUse { addr } => {
            let holder = net
                .attachments
                .iter()
                .find(|a| a.addresses.iter().any(|n| n.addr() == addr))
                .map(|a| format!(" by namespace {}", a.namespace))
                .unwrap_or_default();
            Error::Conflict(format!(
                "address {addr} is already in use on network {}{holder}",
                net.name
            ))
        }
        IpamError::Exhausted { .. } => Error::Conflict(e.to_string()),
        other => Error::Invalid(other.to_string()),
    }
}

/// Validates a request and plans the steps that make the attachment.
pub fn plan_connect(
    state: &State,
    req: &ConnectRequest,
    facts: &NsFacts,
) -> Result<(State, Vec<Op>)> {
    let net = find_network(state, &req.network)?;
    let ns = NsRef::parse(&req.namespace)?;
    let ifname = req
        .ifname
        .clone()
        .unwrap_or_else(|| DEFAULT_IFNAME.to_string());
    names::validate_ifname(&ifname)?;
    let mac = req.mac.as_deref().map(names::parse_mac).transpose()?;
    if net.attachment(&ns).is_some() {
        return Err(Error::Conflict(format!(
            "namespace {ns} is already connected to network {}",
            net.name
        )));
    }
    if let Some((other, a)) = state.attachments_of(&ns).find(|(_, a)| a.ifname == ifname) {
        return Err(Error::Conflict(format!(
            "namespace {ns} already has interface {} (network {}); pass --ifname",
            a.ifname, other.name
        )));
    }
    if !facts.exists && ns.name().is_none() {
        return Err(Error::NotFound(format!("namespace {ns} does not exist")));
    }
    if facts.ifnames.contains(&ifname) {
        return Err(Error::Conflict(format!(
            "namespace {ns} already has an interface named {ifname}; pass --ifname"
        )));
    }
    let ports = published_ports(state, net, &req.publish)?;
    let host_ifname = names::host_veth_name(&net.name, &ns.to_string(), &ifname);
    if facts.host_ifnames.contains(&host_ifname) {
        return Err(Error::Conflict(format!(
            "host interface {host_ifname} (derived for namespace {ns}) already exists"
        )));
    }

    let mut used: BTreeSet<IpAddr> = net.used_addresses();
    let mut addresses = Vec::new();
    for addr in requested_addresses(net, &req.ips)? {
        let subnet = net
            .subnets
            .iter()
            .find(|s| s.cidr.addr().is_ipv4() == addr.is_ipv4())
            .expect("requested_addresses checked the family");
        ipam::check_requested(subnet, addr, &used).map_err(|e| ipam_error(e, net))?;
        used.insert(addr);
        addresses.push(IpNet::new(addr, subnet.cidr.prefix_len()).expect("valid prefix"));
    }
    for subnet in &net.subnets {
        if addresses
            .iter()
            .any(|a| a.addr().is_ipv4() == subnet.cidr.addr().is_ipv4())
        {
            continue;
        }
        let addr = ipam::allocate(subnet, &used).map_err(|e| ipam_error(e, net))?;
        used.insert(addr);
        addresses.push(IpNet::new(addr, subnet.cidr.prefix_len()).expect("valid prefix"));
    }

    let target = Target::Ns(ns.clone());
    let mut ops = Vec::new();
    let namespace_created = !facts.exists;
    if namespace_created {
        ops.push(Op::CreateNetns {
            name: ns.name().expect("checked above").to_string(),
        });
    }
    ops.push(Op::CreateVeth {
        host: host_ifname.clone(),
        peer: ifname.clone(),
        netns: ns.clone(),
        bridge: net.bridge.clone(),
        mtu: net.mtu,
        mac,
        group: net.link_group,
    });
    if !ports.is_empty() {
        ops.push(Op::SetHairpin {
            ifname: host_ifname.clone(),
        });
    }
    ops.push(Op::LinkUp {
        target: target.clone(),
        ifname: "lo".into(),
    });
    for a in &addresses {
        ops.push(Op::AddAddress {
            target: target.clone(),
            ifname: ifname.clone(),
            addr: *a,
        });
    }
    ops.push(Op::LinkUp {
        target: target.clone(),
        ifname: ifname.clone(),
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
                ifname: ifname.clone(),
                gateway: s.gateway,
            });
        }
    }

    let mut new_state = state.clone();
    new_state
        .networks
        .get_mut(&req.network)
        .expect("found above")
        .attachments
        .push(Attachment {
            namespace: ns,
            namespace_created,
            host_ifname,
            ifname,
            mac: mac.as_ref().map(names::format_mac),
            addresses,
            ports,
            owner: None,
            cni: req.cni.clone(),
        });
    Ok((new_state, ops))
}

/// Plans the removal of one attachment.
/// Plans the removal of attachments of one network: all their host veths
/// in one batched deletion, then the namespaces nsnet created for them.
pub fn plan_disconnect(
    state: &State,
    network: &str,
    namespaces: &[String],
) -> Result<(State, Vec<Op>)> {
    let net = find_network(state, network)?;
    let mut refs = Vec::new();
    for namespace in namespaces {
        let ns = NsRef::parse(namespace)?;
        if net.attachment(&ns).is_none() {
            return Err(Error::NotFound(format!(
                "namespace {ns} is not connected to network {network}"
            )));
        }
        if refs.contains(&ns) {
            return Err(Error::Invalid(format!("namespace {ns} is listed twice")));
        }
        refs.push(ns);
    }
    let mut new_state = state.clone();
    for ns in &refs {
        new_state.detach(network, ns);
    }
    // Published ports go first, so that no new connection is sent to an
    // attachment on its way out.
    let mut ops: Vec<Op> = Op::firewall(state, &new_state).into_iter().collect();
    let mut new_state = state.clone();
    ops.push(Op::DeleteLinks {
        names: refs
            .iter()
            .map(|ns| net.attachment(ns).expect("checked").host_ifname.clone())
            .collect(),
    });
    let published: Vec<IpAddr> = refs
        .iter()
        .map(|ns| net.attachment(ns).expect("checked"))
        .filter(|a| !a.ports.is_empty())
        .flat_map(|a| a.addresses.iter().map(|n| n.addr()))
        .collect();
    if !published.is_empty() {
        ops.push(Op::ForgetFlows { addrs: published });
    }
    for ns in &refs {
        if new_state.detach(network, ns) {
            ops.push(Op::DeleteNetns {
                name: ns.name().expect("detach checked it is named").to_string(),
            });
        }
    }
    Ok((new_state, ops))
}

impl Nsnet {
    pub fn connect(&self, req: &ConnectRequest) -> Result<Attachment> {
        Ok(self.connect_many(std::slice::from_ref(req))?.remove(0))
    }

    /// Attaches several namespaces under one lock, with one state write and
    /// all or nothing: if any attachment fails, none is left.
    pub fn connect_many(&self, reqs: &[ConnectRequest]) -> Result<Vec<Attachment>> {
        require_root("connect namespaces")?;
        let (lock, before) = self.begin()?;
        let mut state = before.clone();
        let mut kernel = LiveKernel::new();
        let mut ops = Vec::new();
        for req in reqs {
            let ifname = req.ifname.as_deref().unwrap_or(DEFAULT_IFNAME);
            let facts = gather_facts(
                &mut kernel,
                state.networks.get(&req.network),
                &req.namespace,
                ifname,
            )?;
            let (next, mut more) = plan_connect(&state, req, &facts)?;
            state = next;
            ops.append(&mut more);
        }
        let mut ops = plan::batch_namespaces(ops);
        // One firewall transaction for all of them, after the links exist.
        ops.extend(Op::firewall(&before, &state));
        plan::heal_firewall(&mut ops, &before).map_err(|e| Error::Kernel(e.into()))?;
        self.commit(
            &lock,
            &before,
            &state,
            &ops,
            Mode::AllOrNothing,
            &mut kernel,
        )?;
        reqs.iter()
            .map(|req| {
                let ns = NsRef::parse(&req.namespace)?;
                Ok(state.networks[&req.network]
                    .attachment(&ns)
                    .expect("just added")
                    .clone())
            })
            .collect()
    }

    pub fn disconnect(&self, network: &str, namespace: &str) -> Result<Attachment> {
        Ok(self
            .disconnect_many(network, &[namespace.to_string()])?
            .remove(0))
    }

    /// Detaches several namespaces from one network, keeping going past
    /// pieces that are already gone.
    pub fn disconnect_many(&self, network: &str, namespaces: &[String]) -> Result<Vec<Attachment>> {
        require_root("disconnect namespaces")?;
        let (lock, state) = self.begin()?;
        let (new_state, mut ops) = plan_disconnect(&state, network, namespaces)?;
        plan::heal_firewall(&mut ops, &state).map_err(|e| Error::Kernel(e.into()))?;
        let removed = namespaces
            .iter()
            .map(|n| {
                let ns = NsRef::parse(n).expect("planned");
                state.networks[network]
                    .attachment(&ns)
                    .expect("planned")
                    .clone()
            })
            .collect();
        let mut kernel = LiveKernel::new();
        self.commit(
            &lock,
            &state,
            &new_state,
            &ops,
            Mode::KeepGoing,
            &mut kernel,
        )?;
        Ok(removed)
    }
}

pub(crate) fn gather_facts(
    kernel: &mut LiveKernel,
    net: Option<&Network>,
    namespace: &str,
    ifname: &str,
) -> Result<NsFacts> {
    let Some(net) = net else {
        return Ok(NsFacts::default());
    };
    let ns = NsRef::parse(namespace)?;
    let exists = match ns.open() {
        Ok(_) => true,
        Err(netns::Error::NotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let (ifnames, default_routes) = if exists {
        let handle = kernel.handle(&Target::Ns(ns.clone()))?;
        let names = handle.links()?.into_iter().map(|l| l.name).collect();
        let defaults = handle
            .routes()?
            .into_iter()
            .filter(|r| r.destination.prefix_len() == 0)
            .map(|r| r.destination.addr().is_ipv4())
            .collect();
        (names, defaults)
    } else {
        (Vec::new(), Vec::new())
    };
    // Only the derived name matters: look it up instead of dumping every
    // host link, a list that grows with the number of attachments.
    let host_ifname = names::host_veth_name(&net.name, &ns.to_string(), ifname);
    let host_ifnames = match kernel.host()?.link_by_name(&host_ifname)? {
        Some(_) => vec![host_ifname],
        None => Vec::new(),
    };
    Ok(NsFacts {
        exists,
        ifnames,
        host_ifnames,
        default_routes,
    })
}

//! The LAN drivers: `macvlan` (each namespace gets an interface of its own
//! on a host interface, with its own MAC and an address of the LAN) and
//! `host-device` (a whole host interface moves into the namespace and
//! back). Neither has a bridge, a gateway address of nsnet's, NAT or
//! firewall rules: the LAN's router is the gateway.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Device, NetworkDriver};
use crate::model::ipam::{self, Leases, Subnet};
use crate::model::lan::{HostAccess, Lan, LanHolder, LanRequest, MacvlanMode, SavedDevice};
use crate::model::{names, sysctl, Attachment, CreateRequest, Network, Rejection, State};
use crate::plan::attach::NsFacts;
use crate::plan::network::HostFacts;
use crate::plan::{LanOp, Op, Target};

type Result<T> = std::result::Result<T, Rejection>;

pub struct Macvlan;
pub struct HostDeviceDriver;

/// The driver's name as the command line spells it.
fn driver_name(req: &LanRequest) -> &'static str {
    match req {
        LanRequest::Macvlan { .. } => "macvlan",
        LanRequest::HostDevice { .. } => "host-device",
    }
}

/// What every LAN network refuses: options of a bridge network, a host
/// interface nsnet owns or cannot use, and (macvlan) host access where
/// the mode keeps the host out.
pub fn validate_request(state: &State, req: &CreateRequest, host: &HostFacts) -> Result<()> {
    let Some(lan) = &req.lan else {
        return Ok(());
    };
    let driver = driver_name(lan);
    let option = if req.bridge.is_some() {
        Some("--bridge")
    } else if !req.icc {
        Some("--no-icc (use --mode private)")
    } else if !req.trusted_interfaces.is_empty() {
        Some("--trusted-interface")
    } else if req.gateway_mode != crate::model::GatewayMode::Nat || req.gateway_mode_v6.is_some() {
        Some("--gateway-mode")
    } else if !req.dns_servers.is_empty() || req.dns_domain.is_some() {
        Some("--dns/--dns-domain (nsnet's DNS serves bridge networks)")
    } else {
        None
    };
    if let Some(option) = option {
        return Err(Rejection::NotForLan { option, driver });
    }
    let ifname = lan.host_interface();
    names::validate_ifname(ifname)?;
    let exclusive = matches!(
        lan,
        LanRequest::HostDevice { .. }
            | LanRequest::Macvlan {
                mode: MacvlanMode::Passthru,
                ..
            }
    );
    let taken = state.networks.values().find(|n| {
        n.bridge == ifname
            || n.lan
                .as_ref()
                .is_some_and(|l| l.host_interface() == ifname && (exclusive || uses_exclusively(n)))
    });
    if let Some(other) = taken {
        return Err(Rejection::HostInterfaceTaken {
            ifname: ifname.to_string(),
            network: other.name.clone(),
        });
    }
    match (&host.lan_interface, lan) {
        (None, LanRequest::Macvlan { parent, .. }) => {
            if let Some((base, id)) = crate::model::lan::vlan_parent(parent) {
                return Err(Rejection::VlanParent {
                    parent: parent.clone(),
                    base: base.to_string(),
                    id,
                    supported: host.vlan_supported,
                });
            }
            return Err(Rejection::NoSuchHostInterface {
                ifname: parent.clone(),
                driver,
            });
        }
        (None, LanRequest::HostDevice { device }) => {
            return Err(Rejection::NoSuchHostInterface {
                ifname: device.clone(),
                driver,
            })
        }
        (Some(l), _) if l.kind == "loopback" || l.kind == "bridge" && driver == "host-device" => {
            return Err(Rejection::UnusableHostInterface {
                ifname: l.name.clone(),
                kind: l.kind.clone(),
                driver,
            })
        }
        _ => {}
    }
    if req.subnets.is_empty() && matches!(lan, LanRequest::Macvlan { .. }) {
        return Err(Rejection::MissingOption {
            option: "--subnet",
            reason: "a macvlan network takes the LAN's subnet (and --gateway, when the LAN's router is not its first address)",
        });
    }
    if let LanRequest::Macvlan {
        mode,
        host_access: true,
        ..
    } = lan
    {
        if matches!(mode, MacvlanMode::Private | MacvlanMode::Passthru) {
            return Err(Rejection::HostAccessInMode { mode: *mode });
        }
    }
    if let LanRequest::Macvlan { ip_ranges, .. } = lan {
        for r in ip_ranges {
            if !req.subnets.iter().any(|s| s.contains(r)) {
                return Err(Rejection::RangeOutsideSubnet { range: *r });
            }
        }
    }
    Ok(())
}

/// Whether `n` uses its host interface alone: a host-device network, or
/// a macvlan network in passthru mode.
fn uses_exclusively(n: &Network) -> bool {
    match &n.lan {
        Some(Lan::HostDevice(_)) => true,
        Some(Lan::Macvlan(m)) => m.mode == MacvlanMode::Passthru,
        None => false,
    }
}

/// The LAN part of a new network's record, from its request: the host
/// access interface gets the lowest address of the pool no one answered
/// for.
pub fn lan_of(req: &CreateRequest, subnets: &[Subnet], host: &HostFacts) -> Result<Option<Lan>> {
    let Some(lan) = &req.lan else {
        return Ok(None);
    };
    Ok(Some(match lan {
        LanRequest::HostDevice { device } => Lan::HostDevice(crate::model::lan::HostDevice {
            device: device.clone(),
        }),
        LanRequest::Macvlan {
            parent,
            mode,
            ip_ranges,
            host_access,
            probe_ms,
        } => {
            let host_access = match host_access {
                false => None,
                true => {
                    let mut addresses = Vec::new();
                    for s in subnets {
                        let range = ip_ranges.iter().find(|r| s.cidr.contains(*r));
                        let addr = pick(s, range, &Leases::default(), &host.lan_probe)
                            .ok_or(Rejection::LanPoolBusy { subnet: s.cidr })?;
                        addresses.push(IpNet::from(addr));
                    }
                    Some(HostAccess {
                        ifname: host_access_name(&req.name),
                        addresses,
                    })
                }
            };
            Lan::Macvlan(crate::model::lan::Macvlan {
                parent: parent.clone(),
                mode: *mode,
                ip_ranges: ip_ranges.clone(),
                host_access,
                probe_ms: *probe_ms,
            })
        }
    }))
}

/// The host's macvlan interface of a network with host access.
pub fn host_access_name(network: &str) -> String {
    format!("nsl{:08x}", names::stable_hash(&[network, "host-access"]))
}

/// What probing found for a pool: the addresses probed, and who answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LanProbe {
    /// `None`: probing is off (nothing is skipped).
    pub probed: Option<Vec<IpAddr>>,
    pub holders: Vec<LanHolder>,
}

impl LanProbe {
    pub fn holder(&self, addr: &IpAddr) -> Option<&LanHolder> {
        self.holders.iter().find(|h| h.address == *addr)
    }
}

/// The lowest free address of the pool that probing found free (any free
/// one when probing is off).
fn pick(subnet: &Subnet, range: Option<&IpNet>, used: &Leases, probe: &LanProbe) -> Option<IpAddr> {
    let v4 = subnet.cidr.addr().is_ipv4();
    match &probe.probed {
        // IPv6 addresses are not probed: the kernel's duplicate address
        // detection marks a taken one `dadfailed` (check reports it).
        Some(probed) if v4 => probed
            .iter()
            .find(|a| {
                subnet.cidr.contains(*a)
                    && range.is_none_or(|r| r.contains(*a))
                    && **a != subnet.gateway
                    && !used.contains(a)
                    && probe.holder(a).is_none()
            })
            .copied(),
        _ => ipam::free_addresses(subnet, range, used, 1)
            .first()
            .copied(),
    }
}

/// The addresses a connect to `net` would probe: those asked for, and the
/// lowest `n` free ones of each IPv4 pool beyond `known` holders.
pub fn probe_candidates(
    net: &Network,
    asked: &[IpAddr],
    known: &[LanHolder],
    n: usize,
) -> Vec<IpAddr> {
    let Some(m) = net.macvlan() else {
        return Vec::new();
    };
    if m.probe_ms == 0 {
        return Vec::new();
    }
    let mut used = net.used_addresses();
    if let Some(h) = &m.host_access {
        for a in &h.addresses {
            used.insert(a.addr());
        }
    }
    for h in known {
        used.insert(h.address);
    }
    let mut out: Vec<IpAddr> = asked.iter().filter(|a| a.is_ipv4()).copied().collect();
    for s in net.subnets.iter().filter(|s| s.cidr.addr().is_ipv4()) {
        let range = m.ip_ranges.iter().find(|r| s.cidr.contains(*r));
        out.extend(ipam::free_addresses(s, range, &used, n));
    }
    out
}

/// The addresses of a new attachment to a LAN network: those asked for
/// (refused when someone on the LAN answered for one), one per subnet from
/// the probed pool; on a host-device network without subnets, the
/// device's own.
pub fn lease(net: &Network, asked: &[IpAddr], facts: &NsFacts) -> Result<Vec<IpNet>> {
    if net.subnets.is_empty() {
        return Ok(facts
            .device
            .as_ref()
            .map(|d| d.addresses.clone())
            .unwrap_or_default());
    }
    let mut used = net.used_addresses();
    if let Some(h) = net.macvlan().and_then(|m| m.host_access.as_ref()) {
        for a in &h.addresses {
            used.insert(a.addr());
        }
    }
    let ranges = net
        .macvlan()
        .map(|m| m.ip_ranges.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for s in &net.subnets {
        let prefix = s.cidr.prefix_len();
        if let Some(a) = asked
            .iter()
            .find(|a| a.is_ipv4() == s.cidr.addr().is_ipv4())
        {
            ipam::check_requested(s, *a, &used)
                .map_err(|e| crate::plan::attach::ipam_rejection(e, net))?;
            if let Some(h) = facts.lan_probe.holder(a) {
                return Err(Rejection::AddressOnLan {
                    address: *a,
                    network: net.name.clone(),
                    mac: names::format_mac(&h.mac),
                });
            }
            out.push(IpNet::new(*a, prefix).expect("valid prefix"));
            continue;
        }
        let range = ranges.iter().find(|r| s.cidr.contains(*r));
        let addr = pick(s, range, &used, &facts.lan_probe)
            .ok_or(Rejection::LanPoolBusy { subnet: s.cidr })?;
        out.push(IpNet::new(addr, prefix).expect("valid prefix"));
    }
    Ok(out)
}

impl NetworkDriver for Macvlan {
    fn validate(&self, _state: &State, _req: &CreateRequest) -> Result<()> {
        Ok(())
    }

    fn setup(&self, network: &mut Network, _host: &HostFacts, _mac: [u8; 6]) -> Vec<Op> {
        let Some(m) = network.macvlan() else {
            return Vec::new();
        };
        let Some(h) = &m.host_access else {
            return Vec::new();
        };
        let mut ops = vec![
            Op::Lan(LanOp::CreateMacvlan {
                netns: None,
                ifname: h.ifname.clone(),
                parent: m.parent.clone(),
                mode: m.mode,
                mtu: network.mtu,
                group: Some(network.link_group),
            }),
            // Only for its own addresses: without this the host answers
            // ARP for the parent's addresses on it too (ARP flux).
            Op::SetSysctl {
                target: Target::Host,
                key: sysctl::arp_ignore(&h.ifname),
                value: "1".into(),
            },
        ];
        for a in &h.addresses {
            ops.push(Op::AddAddress {
                target: Target::Host,
                ifname: h.ifname.clone(),
                addr: *a,
            });
        }
        ops.push(Op::LinkUp {
            target: Target::Host,
            ifname: h.ifname.clone(),
        });
        ops
    }

    fn links(&self, network: &Network) -> Vec<String> {
        network
            .macvlan()
            .and_then(|m| m.host_access.as_ref())
            .map(|h| vec![h.ifname.clone()])
            .unwrap_or_default()
    }

    fn release(&self, _network: &Network) -> Vec<Op> {
        Vec::new()
    }

    fn devices(&self, network: &Network) -> Vec<Device> {
        let Some(m) = network.macvlan() else {
            return Vec::new();
        };
        let mut out = vec![Device::Parent {
            name: m.parent.clone(),
        }];
        out.extend(m.host_access.iter().map(|h| Device::HostAccess {
            name: h.ifname.clone(),
            addresses: h.addresses.clone(),
        }));
        out
    }

    fn connect(
        &self,
        net: &Network,
        att: &Attachment,
        facts: &NsFacts,
        mac: Option<[u8; 6]>,
    ) -> Vec<Op> {
        let m = net.macvlan().expect("a macvlan network");
        let mut ops = vec![Op::Lan(LanOp::CreateMacvlan {
            netns: Some(att.namespace.clone()),
            ifname: att.ifname.clone(),
            parent: m.parent.clone(),
            mode: m.mode,
            mtu: net.mtu,
            group: None,
        })];
        if let Some(mac) = mac {
            ops.push(Op::SetMac {
                target: Target::Ns(att.namespace.clone()),
                ifname: att.ifname.clone(),
                mac,
            });
        }
        ops.extend(configure(net, att, facts));
        if let Some(h) = &m.host_access {
            ops.extend(att.addresses.iter().map(|a| {
                Op::Lan(LanOp::AddDeviceRoute {
                    destination: IpNet::from(a.addr()),
                    ifname: h.ifname.clone(),
                })
            }));
        }
        ops
    }

    fn disconnect(&self, net: &Network, leaving: &[&Attachment], doomed: &[String]) -> Vec<Op> {
        let mut ops = Vec::new();
        if let Some(h) = net.macvlan().and_then(|m| m.host_access.as_ref()) {
            for a in leaving {
                ops.extend(a.addresses.iter().map(|x| {
                    Op::Lan(LanOp::DeleteDeviceRoute {
                        destination: IpNet::from(x.addr()),
                        ifname: h.ifname.clone(),
                    })
                }));
            }
        }
        // A namespace that goes takes its interface along.
        for a in leaving.iter().filter(|a| !goes(a, doomed)) {
            ops.push(Op::DeleteLink {
                target: Target::Ns(a.namespace.clone()),
                name: a.ifname.clone(),
            });
        }
        ops
    }
}

fn goes(a: &Attachment, doomed: &[String]) -> bool {
    a.namespace
        .name()
        .is_some_and(|n| doomed.iter().any(|d| d == n))
}

/// `lo` up, the addresses, the interface up, and a default route via
/// the LAN's router (unless internal, or the namespace has one).
fn configure(net: &Network, att: &Attachment, facts: &NsFacts) -> Vec<Op> {
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

impl NetworkDriver for HostDeviceDriver {
    fn validate(&self, _state: &State, _req: &CreateRequest) -> Result<()> {
        Ok(())
    }

    fn setup(&self, _network: &mut Network, _host: &HostFacts, _mac: [u8; 6]) -> Vec<Op> {
        Vec::new()
    }

    fn links(&self, _network: &Network) -> Vec<String> {
        Vec::new()
    }

    fn release(&self, _network: &Network) -> Vec<Op> {
        Vec::new()
    }

    fn devices(&self, _network: &Network) -> Vec<Device> {
        Vec::new()
    }

    fn connect(
        &self,
        net: &Network,
        att: &Attachment,
        facts: &NsFacts,
        mac: Option<[u8; 6]>,
    ) -> Vec<Op> {
        let device = att
            .device
            .clone()
            .expect("a host-device attachment records its device");
        let mut ops = vec![Op::Lan(LanOp::MoveDeviceIn {
            device,
            netns: att.namespace.clone(),
            ifname: att.ifname.clone(),
        })];
        if let Some(mac) = mac {
            ops.push(Op::SetMac {
                target: Target::Ns(att.namespace.clone()),
                ifname: att.ifname.clone(),
                mac,
            });
        }
        ops.extend(configure(net, att, facts));
        ops
    }

    fn disconnect(&self, _net: &Network, leaving: &[&Attachment], _doomed: &[String]) -> Vec<Op> {
        // Back before the namespace goes: deleting a namespace destroys a
        // virtual device in it, and a physical one comes back to the host
        // under its name in the namespace, without its addresses.
        leaving
            .iter()
            .filter_map(|a| {
                Some(Op::Lan(LanOp::ReturnDevice {
                    netns: a.namespace.clone(),
                    ifname: a.ifname.clone(),
                    device: a.device.clone()?,
                }))
            })
            .collect()
    }
}

/// The saved state of a host device as the host has it now (the facts of
/// a connect), refused when it is not there.
pub fn device_to_move(net: &Network, facts: &NsFacts) -> Result<Option<SavedDevice>> {
    let Some(Lan::HostDevice(d)) = &net.lan else {
        return Ok(None);
    };
    if let Some(a) = net.attachments.iter().next() {
        return Err(Rejection::DeviceInUse {
            device: d.device.clone(),
            network: net.name.clone(),
            namespace: a.namespace.clone(),
        });
    }
    match &facts.device {
        Some(saved) => Ok(Some(saved.clone())),
        None => Err(Rejection::NoSuchHostInterface {
            ifname: d.device.clone(),
            driver: "host-device",
        }),
    }
}

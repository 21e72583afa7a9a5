//! The LAN drivers: `macvlan` (each namespace gets an interface of its own
//! on a host interface, with its own MAC and an address of the LAN) and
//! `host-device` (a whole host interface moves into the namespace and
//! back). Neither has a bridge, a gateway address of nsnet's, NAT or
//! firewall rules: the LAN's router is the gateway. Addresses are probed
//! on the LAN (`kernel::dad`, through the host seam) before the plan picks
//! them; the plan takes the lowest one no one answered for.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Device, NetworkDriver};
use crate::model::ipam::{self, Leases, Subnet};
use crate::model::lan::{
    range_in, HostAccess, Lan, LanHolder, LanRequest, MacvlanMode, SavedDevice,
};
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

/// An option of bridge networks in a request for a network on the LAN.
fn bridge_option(req: &CreateRequest) -> Option<&'static str> {
    if req.bridge.is_some() {
        Some("--bridge")
    } else if !req.icc {
        Some("--no-icc (use --mode private)")
    } else if !req.trusted_interfaces.is_empty() {
        Some("--trusted-interface")
    } else if req.gateway_mode != crate::model::GatewayMode::Nat || req.gateway_mode_v6.is_some() {
        Some("--gateway-mode")
    } else if (!req.dns_servers.is_empty() || req.dns_domain.is_some())
        && !req.lan.as_ref().is_some_and(LanRequest::host_access)
    {
        Some("--dns/--dns-domain (nsnet's DNS serves a macvlan network with --host-access: it answers on the host's address on the LAN)")
    } else {
        None
    }
}

/// The host interface a LAN network would be on: a valid name, not a
/// bridge of nsnet's nor taken by another LAN network that needs it alone
/// (or by any, when this one does), there, and of a kind that can be.
fn check_host_interface(state: &State, lan: &LanRequest, host: &HostFacts) -> Result<()> {
    let driver = driver_name(lan);
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
        (n.has_bridge() && n.bridge == ifname)
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
    let Some(l) = &host.lan_interface else {
        return Err(match crate::model::lan::vlan_parent(ifname) {
            Some((base, id)) if driver == "macvlan" => Rejection::VlanParent {
                parent: ifname.to_string(),
                base: base.to_string(),
                id,
                supported: host.vlan_supported,
            },
            _ => Rejection::NoSuchHostInterface {
                ifname: ifname.to_string(),
                driver,
            },
        });
    };
    if l.kind == "loopback" || (l.kind == "bridge" && driver == "host-device") {
        return Err(Rejection::UnusableHostInterface {
            ifname: l.name.clone(),
            kind: l.kind.clone(),
            driver,
        });
    }
    Ok(())
}

/// What a macvlan network needs besides: the LAN's subnet, ranges inside
/// it, and a mode that lets the host in when it asks to be.
fn check_macvlan(req: &CreateRequest, lan: &LanRequest) -> Result<()> {
    let LanRequest::Macvlan {
        mode,
        host_access,
        ip_ranges,
        ..
    } = lan
    else {
        return Ok(());
    };
    if req.subnets.is_empty() {
        return Err(Rejection::MissingOption {
            option: "--subnet",
            reason: "a macvlan network takes the LAN's subnet (and --gateway, when the LAN's router is not its first address)",
        });
    }
    if *host_access && matches!(mode, MacvlanMode::Private | MacvlanMode::Passthru) {
        return Err(Rejection::HostAccessInMode { mode: *mode });
    }
    match ip_ranges
        .iter()
        .find(|r| !req.subnets.iter().any(|s| s.contains(*r)))
    {
        Some(r) => Err(Rejection::RangeOutsideSubnet { range: *r }),
        None => Ok(()),
    }
}

/// What every LAN network refuses: options of a bridge network, a host
/// interface nsnet owns or cannot use, and (macvlan) what `check_macvlan`
/// refuses.
fn validate_lan(state: &State, req: &CreateRequest, host: &HostFacts) -> Result<()> {
    let Some(lan) = &req.lan else {
        return Ok(());
    };
    if let Some(option) = bridge_option(req) {
        return Err(Rejection::NotForLan {
            option,
            driver: driver_name(lan),
        });
    }
    check_host_interface(state, lan, host)?;
    check_macvlan(req, lan)
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
                        let range = range_in(ip_ranges, &s.cidr);
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
pub(crate) fn pick(
    subnet: &Subnet,
    range: Option<&IpNet>,
    used: &Leases,
    probe: &LanProbe,
) -> Option<IpAddr> {
    match &probe.probed {
        Some(_) => probed_free(probe, subnet, range, used).next(),
        None => ipam::free_addresses(subnet, range, used, 1)
            .first()
            .copied(),
    }
}

/// The probed addresses of `subnet` (and `range`) that are free: not its
/// gateway, not `used`, and nobody on the LAN answered for them.
fn probed_free<'a>(
    probe: &'a LanProbe,
    subnet: &'a Subnet,
    range: Option<&'a IpNet>,
    used: &'a Leases,
) -> impl Iterator<Item = IpAddr> + 'a {
    probe.probed.iter().flatten().copied().filter(move |a| {
        subnet.cidr.contains(a)
            && range.is_none_or(|r| r.contains(a))
            && *a != subnet.gateway
            && !used.contains(a)
            && probe.holder(a).is_none()
    })
}

/// What the connects of one command to a macvlan network need from
/// probing its LAN: the addresses they ask for (probed alone, refused when
/// someone holds one) and how many leases of each family they take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LanNeed {
    pub asked: Vec<IpAddr>,
    /// IPv4, IPv6.
    pub leases: [usize; 2],
}

fn family(v4: bool) -> usize {
    usize::from(!v4)
}

impl LanNeed {
    /// The need of connects to `net` asking for these addresses each.
    pub fn of<'a>(net: &Network, asked: impl IntoIterator<Item = &'a [IpAddr]>) -> LanNeed {
        let mut need = LanNeed::default();
        for ips in asked {
            need.asked.extend_from_slice(ips);
            for s in &net.subnets {
                let v4 = s.cidr.addr().is_ipv4();
                if !ips.iter().any(|a| a.is_ipv4() == v4) {
                    need.leases[family(v4)] += 1;
                }
            }
        }
        need
    }
}

/// Whether probing has found what the connects need: as many free
/// addresses as they take leases in each family.
pub fn probe_done(net: &Network, need: &LanNeed, probe: &LanProbe) -> bool {
    let Some(m) = net.macvlan() else {
        return true;
    };
    let used = net.used_addresses();
    net.subnets.iter().all(|s| {
        let range = range_in(&m.ip_ranges, &s.cidr);
        probed_free(probe, s, range, &used).count() >= need.leases[family(s.cidr.addr().is_ipv4())]
    })
}

/// The addresses the connects of `need` would probe on `net`'s LAN: those
/// asked for, and of each family they lease, the lowest free ones beyond
/// `known` holders, a batch more than they take.
pub fn probe_candidates(net: &Network, need: &LanNeed, known: &[LanHolder]) -> Vec<IpAddr> {
    let Some(m) = net.macvlan() else {
        return Vec::new();
    };
    if m.probe_ms == 0 {
        return Vec::new();
    }
    let mut used = net.used_addresses();
    for h in known {
        used.insert(h.address);
    }
    let mut out: Vec<IpAddr> = need.asked.clone();
    for s in &net.subnets {
        let leases = need.leases[family(s.cidr.addr().is_ipv4())];
        if leases == 0 {
            continue;
        }
        let range = range_in(&m.ip_ranges, &s.cidr);
        let n = leases + crate::model::lan::PROBE_BATCH - 1;
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
    let used = net.used_addresses();
    let ranges = net.macvlan().map_or(&[][..], |m| &m.ip_ranges[..]);
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
        let range = range_in(ranges, &s.cidr);
        let addr = pick(s, range, &used, &facts.lan_probe)
            .ok_or(Rejection::LanPoolBusy { subnet: s.cidr })?;
        out.push(IpNet::new(addr, prefix).expect("valid prefix"));
    }
    Ok(out)
}

impl NetworkDriver for Macvlan {
    fn validate(&self, state: &State, req: &CreateRequest, host: &HostFacts) -> Result<()> {
        validate_lan(state, req, host)
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
        let made = Op::Lan(LanOp::CreateMacvlan {
            netns: Some(att.namespace.clone()),
            ifname: att.ifname.clone(),
            parent: m.parent.clone(),
            mode: m.mode,
            mtu: net.mtu,
            group: None,
        });
        let mut ops = configure(made, net, att, facts, mac);
        ops.extend(host_routes(net, &att.addresses));
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
        for a in leaving {
            if a.docker.is_some() {
                // Docker moved it back to the host on Leave (or it went
                // with the container's namespace).
                ops.push(Op::DeleteLink {
                    target: Target::Host,
                    name: a.ifname.clone(),
                });
            } else if crate::plan::attach::goes(a, doomed) {
                // The namespace takes its interface along, but later (the
                // kernel destroys namespaces in the background): its
                // addresses go now, so that nobody answers for them.
                ops.extend(a.addresses.iter().map(|x| Op::DeleteAddress {
                    target: Target::Ns(a.namespace.clone()),
                    ifname: a.ifname.clone(),
                    addr: *x,
                }));
            } else {
                ops.push(Op::DeleteLink {
                    target: Target::Ns(a.namespace.clone()),
                    name: a.ifname.clone(),
                });
            }
        }
        ops
    }
}

/// The interface made (or moved in) for an attachment, its MAC set when
/// asked, then configured inside as every attachment is.
fn configure(
    made: Op,
    net: &Network,
    att: &Attachment,
    facts: &NsFacts,
    mac: Option<[u8; 6]>,
) -> Vec<Op> {
    let mut ops = vec![made];
    if let Some(mac) = mac {
        ops.push(Op::SetMac {
            target: Target::Ns(att.namespace.clone()),
            ifname: att.ifname.clone(),
            mac,
        });
    }
    ops.extend(crate::plan::attach::configure_inside(net, att, facts));
    ops
}

/// The host's routes to `addresses` through its interface on a macvlan
/// network, when it has one.
pub(crate) fn host_routes(net: &Network, addresses: &[IpNet]) -> Vec<Op> {
    let Some(h) = net.macvlan().and_then(|m| m.host_access.as_ref()) else {
        return Vec::new();
    };
    addresses
        .iter()
        .map(|a| {
            Op::Lan(LanOp::AddDeviceRoute {
                destination: IpNet::from(a.addr()),
                ifname: h.ifname.clone(),
            })
        })
        .collect()
}

impl NetworkDriver for HostDeviceDriver {
    fn validate(&self, state: &State, req: &CreateRequest, host: &HostFacts) -> Result<()> {
        validate_lan(state, req, host)
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
        let made = Op::Lan(LanOp::MoveDeviceIn {
            device,
            netns: att.namespace.clone(),
            ifname: att.ifname.clone(),
        });
        configure(made, net, att, facts, mac)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectRequest, NsRef};
    use crate::plan::attach::{plan_connect, plan_disconnect};
    use crate::plan::network::{plan_create, plan_remove, ExistingLink};

    fn parent() -> HostFacts {
        HostFacts {
            lan_interface: Some(ExistingLink {
                name: "eth0".into(),
                kind: "veth".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                up: true,
            }),
            ..HostFacts::default()
        }
    }

    fn macvlan(host_access: bool, mode: MacvlanMode) -> CreateRequest {
        CreateRequest {
            lan: Some(LanRequest::Macvlan {
                parent: "eth0".into(),
                mode,
                ip_ranges: vec![],
                host_access,
                probe_ms: 200,
            }),
            ..CreateRequest::for_test("home", &["192.0.2.0/24"])
        }
    }

    fn steps(ops: &[Op]) -> Vec<String> {
        ops.iter().map(|o| o.to_string()).collect()
    }

    fn probed(holders: &[(&str, u8)], probed: &[&str]) -> NsFacts {
        NsFacts {
            lan_probe: LanProbe {
                probed: Some(probed.iter().map(|a| a.parse().unwrap()).collect()),
                holders: holders
                    .iter()
                    .map(|(a, m)| LanHolder {
                        address: a.parse().unwrap(),
                        mac: [2, 0, 0, 0, 0, *m],
                    })
                    .collect(),
            },
            ..NsFacts::default()
        }
    }

    #[test]
    fn a_macvlan_network_has_no_bridge_firewall_or_forwarding() {
        let (s, ops) = plan_create(
            &State::default(),
            &macvlan(false, MacvlanMode::Bridge),
            &parent(),
        )
        .unwrap();
        assert!(ops.is_empty(), "{:?}", steps(&ops));
        let net = &s.networks["home"];
        assert!(!net.has_bridge() && !net.dns && !net.forwards());
        assert_eq!(net.driver(), crate::model::DriverKind::Macvlan);
        let host = HostFacts {
            lan_probe: LanProbe {
                probed: Some(vec![
                    "192.0.2.2".parse().unwrap(),
                    "192.0.2.3".parse().unwrap(),
                ]),
                holders: vec![LanHolder {
                    address: "192.0.2.2".parse().unwrap(),
                    mac: [2, 0, 0, 0, 0, 2],
                }],
            },
            ..parent()
        };
        let (s, ops) = plan_create(
            &State::default(),
            &macvlan(true, MacvlanMode::Bridge),
            &host,
        )
        .unwrap();
        let shim = host_access_name("home");
        assert_eq!(
            steps(&ops),
            [
                format!("create macvlan {shim} (bridge) on eth0 in host"),
                format!("set net/ipv4/conf/{shim}/arp_ignore = 1 in host"),
                format!("add address 192.0.2.3/32 to {shim} in host"),
                format!("bring up {shim} in host"),
            ],
            "the host's own address skips the one someone answered for"
        );
        let (_, ops) = plan_remove(&s, "home", false).unwrap();
        assert!(
            matches!(&ops[..], [Op::DeleteLinkGroup { names, .. }] if *names == [shim.clone()]),
            "{:?}",
            steps(&ops)
        );
    }

    #[test]
    fn a_connect_skips_addresses_in_use_on_the_lan_and_a_disconnect_silences_them() {
        let (s, _) = plan_create(
            &State::default(),
            &macvlan(true, MacvlanMode::Bridge),
            &parent(),
        )
        .unwrap();
        let shim = host_access_name("home");
        let req = ConnectRequest::new("home", NsRef::Named("a".into()));
        let facts = probed(&[("192.0.2.3", 9)], &["192.0.2.3", "192.0.2.4"]);
        let (s, ops) = plan_connect(&s, &req, &facts).unwrap();
        assert_eq!(
            steps(&ops),
            [
                "create namespace a".to_string(),
                "create macvlan eth0 (bridge) on eth0 in a".into(),
                "bring up lo in namespace a".into(),
                "add address 192.0.2.4/24 to eth0 in namespace a".into(),
                "bring up eth0 in namespace a".into(),
                "add default route via 192.0.2.1 in namespace a".into(),
                format!("add route to 192.0.2.4/32 dev {shim} in host"),
                // nsnet's DNS server answers on the host's address there.
                "write /etc/netns/a/resolv.conf".into(),
            ]
        );
        assert_eq!(
            s.resolv_confs.get("a").unwrap().servers,
            ["192.0.2.2".parse::<std::net::IpAddr>().unwrap()]
        );
        // An address asked for that someone answered for: a conflict
        // naming the MAC; ports: refused; nothing probed free: refused.
        let asked = ConnectRequest {
            ips: vec!["192.0.2.3".parse().unwrap()],
            ..ConnectRequest::new("home", NsRef::Named("b".into()))
        };
        let e = plan_connect(&s, &asked, &facts).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string().contains("02:00:00:00:00:09")),
            (4, true),
            "{e}"
        );
        let ports = ConnectRequest {
            publish: vec!["8080:80".parse().unwrap()],
            ..ConnectRequest::new("home", NsRef::Named("b".into()))
        };
        assert_eq!(plan_connect(&s, &ports, &facts).unwrap_err().exit_code(), 2);
        let busy = probed(&[("192.0.2.5", 9)], &["192.0.2.5"]);
        let e = plan_connect(
            &s,
            &ConnectRequest::new("home", NsRef::Named("b".into())),
            &busy,
        )
        .unwrap_err();
        assert!(matches!(e, Rejection::LanPoolBusy { .. }), "{e}");
        let (_, ops) = plan_disconnect(&s, "home", &[NsRef::Named("a".into())]).unwrap();
        assert_eq!(
            steps(&ops),
            [
                format!("delete route to 192.0.2.4/32 dev {shim} in host"),
                "delete address 192.0.2.4/24 from eth0 in namespace a".into(),
                "delete namespace a".into(),
                "remove /etc/netns/a/resolv.conf".into(),
            ]
        );
    }

    #[test]
    fn a_host_device_goes_back_before_its_namespace_also_in_recovery() {
        let req = CreateRequest {
            lan: Some(LanRequest::HostDevice {
                device: "eth1".into(),
            }),
            ..CreateRequest::named("hd")
        };
        let host = HostFacts {
            lan_interface: Some(ExistingLink {
                name: "eth1".into(),
                kind: "veth".into(),
                mac: None,
                up: true,
            }),
            ..HostFacts::default()
        };
        let (s, _) = plan_create(&State::default(), &req, &host).unwrap();
        let saved = SavedDevice {
            name: "eth1".into(),
            mac: Some("02:00:00:00:00:01".into()),
            mtu: 1400,
            up: true,
            addresses: vec!["198.51.100.7/24".parse().unwrap()],
            routes: vec![],
            sysctls: Default::default(),
        };
        let facts = NsFacts {
            device: Some(saved.clone()),
            ..NsFacts::default()
        };
        let x = NsRef::Named("x".into());
        let (after, ops) = plan_connect(&s, &ConnectRequest::new("hd", x.clone()), &facts).unwrap();
        assert_eq!(steps(&ops)[1], "move host interface eth1 into x as eth0");
        assert!(
            steps(&ops).contains(&"add address 198.51.100.7/24 to eth0 in namespace x".to_string()),
            "the device keeps its addresses"
        );
        assert_eq!(
            crate::plan::undo_of(&ops[1], None)
                .map(|o| o.to_string())
                .as_deref(),
            Some("move eth0 of x back to the host as eth1")
        );
        let e = plan_connect(
            &after,
            &ConnectRequest::new("hd", NsRef::Named("y".into())),
            &facts,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 4, "{e}");
        let gone = plan_connect(
            &s,
            &ConnectRequest::new("hd", x.clone()),
            &NsFacts::default(),
        )
        .unwrap_err();
        assert_eq!(gone.exit_code(), 3, "{gone}");
        for (_, ops) in [
            plan_disconnect(&after, "hd", &[x]).unwrap(),
            crate::plan::recover::recover(&s, &after),
        ] {
            let steps = steps(&ops);
            let back = steps
                .iter()
                .position(|s| s.starts_with("move eth0 of x back"))
                .expect("moved back");
            let gone = steps
                .iter()
                .position(|s| s == "delete namespace x")
                .expect("deleted");
            assert!(back < gone, "{steps:?}");
        }
    }

    #[test]
    fn bad_lan_requests_are_refused_with_the_value() {
        let (passthru, _) = plan_create(
            &State::default(),
            &macvlan(false, MacvlanMode::Passthru),
            &parent(),
        )
        .unwrap();
        let with = |edit: fn(&mut CreateRequest)| {
            let mut r = macvlan(false, MacvlanMode::Bridge);
            r.name = "other".into();
            r.subnets = vec!["198.51.100.0/24".parse().unwrap()];
            edit(&mut r);
            r
        };
        let cases: Vec<(CreateRequest, HostFacts, &str, i32)> = vec![
            (with(|_| {}), parent(), "already used by network home", 4),
            (
                with(|r| {
                    r.lan = Some(LanRequest::Macvlan {
                        parent: "eth0".into(),
                        mode: MacvlanMode::Private,
                        ip_ranges: vec![],
                        host_access: true,
                        probe_ms: 0,
                    })
                }),
                parent(),
                "--mode private",
                2,
            ),
            (
                with(|r| r.internal = true),
                HostFacts::default(),
                "host interface eth0 does not exist",
                3,
            ),
            (
                with(|r| r.bridge = Some("br".into())),
                parent(),
                "--bridge is not an option",
                2,
            ),
            (
                with(|r| r.subnets.clear()),
                parent(),
                "--subnet is needed",
                2,
            ),
        ];
        for (i, (req, host, needle, code)) in cases.into_iter().enumerate() {
            let state = if i == 0 {
                passthru.clone()
            } else {
                State::default()
            };
            let e = plan_create(&state, &req, &host).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }
}

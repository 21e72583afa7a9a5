//! Routes in the main table: via a gateway, straight out of an
//! interface, and the kernel's lookup.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Ctx, Handle, Result};
use crate::model::lan::DeviceRoute;

/// A route of the main table, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Who made it (RTPROT_*: boot, static, dhcp, ...).
    pub protocol: u8,
    pub metric: Option<u32>,
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

impl Handle {
    /// Adds a default route via `gateway` out of interface `oif`.
    pub fn add_default_route(&mut self, gateway: IpAddr, oif: u32) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match gateway {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        msg.attributes.push(RouteAttribute::Oif(oif));
        let target = format!("default via {gateway}");
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "adding route",
                target: &target,
            },
        )
    }

    /// Adds (or replaces) a static route to `destination` via `gateway`;
    /// the kernel picks the interface that reaches the gateway.
    pub fn replace_route(&mut self, destination: IpNet, gateway: IpAddr) -> Result<()> {
        let msg = static_route(destination, gateway);
        let target = format!("{destination} via {gateway}");
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            Ctx {
                op: "adding route",
                target: &target,
            },
        )
    }

    pub fn delete_route(&mut self, destination: IpNet, gateway: IpAddr) -> Result<()> {
        let msg = static_route(destination, gateway);
        let target = format!("{destination} via {gateway}");
        self.request(
            RouteNetlinkMessage::DelRoute(msg),
            0,
            Ctx {
                op: "deleting route",
                target: &target,
            },
        )
    }

    /// Adds a route to `destination` straight out of interface `oif`.
    pub fn add_device_route(&mut self, destination: IpNet, oif: u32) -> Result<()> {
        let target = format!("{destination} dev #{oif}");
        self.request(
            RouteNetlinkMessage::NewRoute(device_route(destination, oif)),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "adding route",
                target: &target,
            },
        )
    }

    pub fn delete_device_route(&mut self, destination: IpNet, oif: u32) -> Result<()> {
        let target = format!("{destination} dev #{oif}");
        self.request(
            RouteNetlinkMessage::DelRoute(device_route(destination, oif)),
            0,
            Ctx {
                op: "deleting route",
                target: &target,
            },
        )
    }

    /// Puts back a route of a host device via its gateway out of `oif`,
    /// with the protocol and metric it had (records from before they were
    /// kept: protocol boot, as `ip route add` makes it).
    pub fn restore_route(&mut self, route: &DeviceRoute, oif: u32) -> Result<()> {
        let (destination, gateway) = (route.destination, route.gateway);
        let mut msg = static_route(destination, gateway);
        msg.header.protocol = route
            .protocol
            .map_or(RouteProtocol::Boot, RouteProtocol::from);
        msg.attributes.push(RouteAttribute::Oif(oif));
        if let Some(metric) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        let target = format!("{destination} via {gateway}");
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            Ctx {
                op: "putting back route",
                target: &target,
            },
        )
    }

    /// Routes of the main table of both families.
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>> {
        self.routes_of(&[AddressFamily::Inet, AddressFamily::Inet6])
    }

    /// The main table's routes of one family (one dump instead of two).
    pub fn routes_of_family(&mut self, v4: bool) -> Result<Vec<RouteInfo>> {
        self.routes_of(&[if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        }])
    }

    fn routes_of(&mut self, families: &[AddressFamily]) -> Result<Vec<RouteInfo>> {
        let mut out = Vec::new();
        for family in families.iter().copied() {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let replies = self.dump(
                RouteNetlinkMessage::GetRoute(msg),
                Ctx {
                    op: "listing routes",
                    target: "",
                },
            )?;
            for reply in replies {
                let RouteNetlinkMessage::NewRoute(m) = reply else {
                    continue;
                };
                if m.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let mut dest = None;
                let mut gateway = None;
                let mut oif = None;
                let mut metric = None;
                for attr in &m.attributes {
                    match attr {
                        RouteAttribute::Destination(a) => dest = ip_of(a),
                        RouteAttribute::Gateway(a) => gateway = ip_of(a),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Priority(p) => metric = Some(*p),
                        _ => {}
                    }
                }
                let dest = dest.unwrap_or(match family {
                    AddressFamily::Inet => IpAddr::V4(0.into()),
                    _ => IpAddr::V6(0u128.into()),
                });
                if let Ok(destination) = IpNet::new(dest, m.header.destination_prefix_length) {
                    out.push(RouteInfo {
                        destination,
                        gateway,
                        oif,
                        protocol: m.header.protocol.into(),
                        metric,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A static unicast route of the main table to `destination` (message
/// building only, no I/O).
fn unicast_route(destination: IpNet, scope: RouteScope) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match destination {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = scope;
    msg.header.kind = RouteType::Unicast;
    msg.header.destination_prefix_length = destination.prefix_len();
    if destination.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                destination.addr(),
            )));
    }
    msg
}

/// A route to `destination` via `gateway` (of the gateway's family).
fn static_route(destination: IpNet, gateway: IpAddr) -> RouteMessage {
    let mut msg = unicast_route(destination, RouteScope::Universe);
    msg.header.address_family = match gateway {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    msg
}

/// A route to `destination` straight out of interface `oif`.
fn device_route(destination: IpNet, oif: u32) -> RouteMessage {
    let mut msg = unicast_route(destination, RouteScope::Link);
    msg.attributes.push(RouteAttribute::Oif(oif));
    msg
}

/// What the kernel's route lookup says about a destination (`ip route
/// get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    /// The destination is one of this namespace's own addresses.
    pub local: bool,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub source: Option<IpAddr>,
}

impl Handle {
    /// The route a packet to `dst` sent from this namespace takes; `None`
    /// when the kernel has none (unreachable, prohibited, blackholed).
    pub fn route_get(&mut self, dst: IpAddr) -> Result<Option<RouteLookup>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let text = dst.to_string();
        let ctx = Ctx {
            op: "looking up the route to",
            target: &text,
        };
        let reply = match self.single(RouteNetlinkMessage::GetRoute(msg), &ctx) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.errno(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EACCES | libc::EINVAL)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let Some(RouteNetlinkMessage::NewRoute(m)) = reply else {
            return Ok(None);
        };
        if !matches!(m.header.kind, RouteType::Unicast | RouteType::Local) {
            return Ok(None);
        }
        let mut out = RouteLookup {
            local: m.header.kind == RouteType::Local,
            oif: None,
            gateway: None,
            source: None,
        };
        for attr in &m.attributes {
            match attr {
                RouteAttribute::Oif(i) => out.oif = Some(*i),
                RouteAttribute::Gateway(a) => out.gateway = ip_of(a),
                RouteAttribute::PrefSource(a) => out.source = ip_of(a),
                _ => {}
            }
        }
        Ok(Some(out))
    }
}

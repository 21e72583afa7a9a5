//! VXLAN devices and the routes to their peers, flannel's L3 scheme: for
//! each peer a permanent neighbour entry (peer's next hop → its device MAC),
//! a forwarding entry (that MAC → the peer's underlay address) and an
//! on-link route (peer subnet via the next hop), all tagged with one
//! protocol number so that they can be told apart from anyone else's.
//! Many peers go to the kernel in one exchange (`Handle::batch`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Ctx, Handle, Result};
use crate::model::overlay::Peer;

/// A VXLAN device to create.
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub underlay_index: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub group: Option<u32>,
}

impl Handle {
    /// Creates a VXLAN device without learning: peers are programmed, never
    /// learned from traffic.
    pub fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.to_string()));
        msg.attributes
            .push(LinkAttribute::Address(spec.mac.to_vec()));
        msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
        if let Some(group) = spec.group {
            msg.attributes.push(LinkAttribute::Group(group));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(spec.vni),
                InfoVxlan::Link(spec.underlay_index),
                InfoVxlan::Local(spec.local),
                InfoVxlan::Learning(false),
                InfoVxlan::Port(spec.port),
            ])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "creating vxlan device",
                target: spec.name,
            },
        )
    }

    /// Adds or replaces the entries of `peers` on device `index`, in one
    /// exchange; the route goes last, so the kernel never has to resolve
    /// the next hop itself.
    pub fn add_peers(&mut self, index: u32, peers: &[Peer]) -> Result<()> {
        let mut msgs = Vec::with_capacity(peers.len() * 3);
        for p in peers {
            msgs.push(RouteNetlinkMessage::NewNeighbour(neighbour(index, p)));
            msgs.push(RouteNetlinkMessage::NewNeighbour(fdb(index, p)));
            msgs.push(RouteNetlinkMessage::NewRoute(route(index, p)));
        }
        self.batch(msgs, NLM_F_CREATE | NLM_F_REPLACE, "adding peer")
    }

    /// Removes the entries of `peers` from device `index`, route first;
    /// entries already gone are fine.
    pub fn remove_peers(&mut self, index: u32, peers: &[Peer]) -> Result<()> {
        let mut msgs = Vec::with_capacity(peers.len() * 3);
        for p in peers {
            msgs.push(RouteNetlinkMessage::DelRoute(route(index, p)));
            msgs.push(RouteNetlinkMessage::DelNeighbour(fdb(index, p)));
            msgs.push(RouteNetlinkMessage::DelNeighbour(neighbour(index, p)));
        }
        match self.batch(msgs, 0, "removing peer") {
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ESRCH)) => Ok(()),
            other => other,
        }
    }

    /// The peers programmed on device `index`: nsnet's routes over it,
    /// joined with the neighbour and forwarding entries of their next hops.
    /// A peer missing one of its entries is not listed (and is re-added
    /// whole by the next reconciliation).
    pub fn peers(&mut self, index: u32) -> Result<Vec<Peer>> {
        let ctx = |op| Ctx { op, target: "" };
        let mut routes = RouteMessage::default();
        routes.header.address_family = AddressFamily::Inet;
        let mut hops: BTreeMap<Ipv4Addr, Ipv4Net> = BTreeMap::new();
        for m in self.dump(RouteNetlinkMessage::GetRoute(routes), ctx("listing routes"))? {
            let RouteNetlinkMessage::NewRoute(m) = m else {
                continue;
            };
            if m.header.protocol != RouteProtocol::Other(PROTOCOL) {
                continue;
            }
            let (mut dst, mut via, mut oif) = (None, None, None);
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if let (Some(d), Some(g), Some(i)) = (dst, via, oif) {
                if i == index {
                    if let Ok(net) = Ipv4Net::new(d, m.header.destination_prefix_length) {
                        hops.insert(g, net);
                    }
                }
            }
        }
        let macs = self.neighbours(index, AddressFamily::Inet)?;
        let vteps = self.neighbours(index, AddressFamily::Bridge)?;
        let mut out = Vec::new();
        for (hop, subnet) in hops {
            let Some(mac) = macs
                .iter()
                .find_map(|(d, mac)| (*d == Some(IpAddr::V4(hop))).then_some(*mac))
            else {
                continue;
            };
            let Some(vtep) = vteps
                .iter()
                .find_map(|(d, m)| (*m == mac).then_some(*d))
                .flatten()
            else {
                continue;
            };
            out.push(Peer { subnet, vtep, mac });
        }
        Ok(out)
    }

    /// (destination, MAC) of the permanent entries of one family on device
    /// `index`: for AF_INET the next hop, for AF_BRIDGE the VTEP.
    fn neighbours(
        &mut self,
        index: u32,
        family: AddressFamily,
    ) -> Result<Vec<(Option<IpAddr>, [u8; 6])>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family;
        // Strict dump checking takes the device of a neighbour dump as an
        // attribute, and that of a forwarding-database dump in the header.
        if family == AddressFamily::Bridge {
            msg.header.ifindex = index;
        } else {
            msg.attributes.push(NeighbourAttribute::IfIndex(index));
        }
        let replies = self.dump(
            RouteNetlinkMessage::GetNeighbour(msg),
            Ctx {
                op: "listing neighbours",
                target: "",
            },
        )?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewNeighbour(m) = m else {
                continue;
            };
            if m.header.ifindex != index || m.header.state != NeighbourState::Permanent {
                continue;
            }
            let (mut dst, mut mac) = (None, None);
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => {
                        dst = Some(IpAddr::V4(*d))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(d)) => {
                        dst = Some(IpAddr::V6(*d))
                    }
                    // Forwarding entries carry the VTEP without a family.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                        dst = match b.len() {
                            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                            _ => None,
                        }
                    }
                    NeighbourAttribute::LinkLayerAddress(l) => {
                        mac = <[u8; 6]>::try_from(l.as_slice()).ok()
                    }
                    _ => {}
                }
            }
            if let Some(mac) = mac {
                out.push((dst, mac));
            }
        }
        Ok(out)
    }
}

/// nsnet's protocol number on peer routes and neighbour entries.
const PROTOCOL: u8 = crate::model::overlay::PEER_ROUTE_PROTOCOL;

fn neighbour(index: u32, p: &Peer) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.header.kind = RouteType::Unicast;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            p.next_hop(),
        )));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(p.mac.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Protocol(RouteProtocol::Other(PROTOCOL)));
    m
}

fn fdb(index: u32, p: &Peer) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(p.mac.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(match p.vtep {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    m.attributes
        .push(NeighbourAttribute::Protocol(RouteProtocol::Other(PROTOCOL)));
    m
}

fn route(index: u32, p: &Peer) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = p.subnet.prefix_len();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Other(PROTOCOL);
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    m.header.flags = RouteFlags::Onlink;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            p.subnet.network(),
        )));
    m.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(p.next_hop())));
    m.attributes.push(RouteAttribute::Oif(index));
    m
}

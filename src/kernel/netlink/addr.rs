//! Interface addresses, IPv4 and IPv6.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Ctx, Handle, Result};

/// An address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    pub index: u32,
    pub addr: IpNet,
}

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn message(index: u32, addr: &IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(&addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

impl Handle {
    /// Adds an address. IPv6 addresses skip duplicate address detection:
    /// otherwise they stay "tentative" for 1-2 s and neither ping nor bind
    /// works meanwhile.
    pub fn add_address(&mut self, index: u32, ifname: &str, addr: &IpNet) -> Result<()> {
        let mut msg = message(index, addr);
        if addr.addr().is_ipv6() {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let target = format!("{addr} on {ifname}");
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "adding address",
                target: &target,
            },
        )
    }

    pub fn delete_address(&mut self, index: u32, ifname: &str, addr: &IpNet) -> Result<()> {
        let target = format!("{addr} on {ifname}");
        self.request(
            RouteNetlinkMessage::DelAddress(message(index, addr)),
            0,
            Ctx {
                op: "deleting address",
                target: &target,
            },
        )
    }

    /// Every address of this namespace (both families).
    pub fn addresses(&mut self) -> Result<Vec<AddressInfo>> {
        let replies = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            Ctx {
                op: "listing addresses",
                target: "",
            },
        )?;
        let mut out = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewAddress(m) = reply else {
                continue;
            };
            // IFA_LOCAL is the interface's own address on point-to-point
            // links; elsewhere IFA_ADDRESS carries it.
            let ip = m
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                })
                .or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
            if let Some(ip) = ip {
                if let Ok(addr) = IpNet::new(ip, m.header.prefix_len) {
                    out.push(AddressInfo {
                        index: m.header.index,
                        addr,
                    });
                }
            }
        }
        Ok(out)
    }
}

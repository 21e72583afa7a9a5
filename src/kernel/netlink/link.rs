//! Links: bridges, veth pairs, up/down, deletion, and reading them back.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::{Ctx, Handle, Result};

/// What a link is, as far as nsnet cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Veth,
    Loopback,
    Other(String),
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    pub group: u32,
}

/// Options of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOption {
    /// Frames may go back out of the port they came in on.
    Hairpin(bool),
    /// The port cannot exchange frames with other isolated ports, only
    /// with the bridge itself and non-isolated ports: at layer 2, so for
    /// ARP, ND, IPv4 and IPv6 alike.
    Isolated(bool),
}

/// A veth pair whose peer is created directly inside another namespace:
/// creating it in place avoids a ~16 ms namespace move per link, and the
/// peer can take a name (`eth0`) that exists in the host namespace.
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub peer_name: &'a str,
    pub peer_netns: BorrowedFd<'a>,
    /// Bridge to enslave the host end to, in the same request.
    pub master: Option<u32>,
    pub mtu: Option<u32>,
    pub peer_mac: Option<[u8; 6]>,
    /// Link group of the host end, so that a whole network's ports can be
    /// deleted in one request (one RCU grace period instead of one each).
    pub group: Option<u32>,
    /// Bring the host end up in the same request.
    pub up: bool,
}

impl Handle {
    /// Looks a link up by name; `None` if there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        let mut msg = without_stats(LinkMessage::default());
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let result = self.dump_one(msg, name);
        match result {
            Ok(link) => Ok(link),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn dump_one(&mut self, msg: LinkMessage, target: &str) -> Result<Option<LinkInfo>> {
        // A GET without NLM_F_DUMP answers with exactly one message.
        let ctx = Ctx {
            op: "looking up link",
            target,
        };
        let mut found = None;
        let seq = self.send(RouteNetlinkMessage::GetLink(msg), 0, &ctx)?;
        self.receive(seq, &ctx, |reply| {
            if let super::Reply::Message(RouteNetlinkMessage::NewLink(m)) = reply {
                found = Some(link_info(&m));
            }
            Ok(false)
        })?;
        Ok(found)
    }

    /// Every link of this namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        self.dump_links(
            RouteNetlinkMessage::GetLink(without_stats(LinkMessage::default())),
            Ctx {
                op: "listing links",
                target: "",
            },
        )
    }

    /// Every link's name and byte counters (received, sent): what `nsnet
    /// ui` shows as traffic. Read raw (the name and IFLA_STATS64 only), as
    /// `links` is: the view refreshes every namespace's every second.
    pub fn counters(&mut self) -> Result<Vec<(String, u64, u64)>> {
        const IFLA_IFNAME: u16 = 3;
        const IFLA_STATS64: u16 = 23;
        let mut out = Vec::new();
        let mut keep = |p: &[u8]| {
            let mut name = None;
            let mut bytes = (0, 0);
            for (kind, v) in super::attributes(p.get(16..).unwrap_or_default()) {
                let u64_at = |i: usize| {
                    v.get(i..i + 8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_ne_bytes)
                };
                match kind {
                    IFLA_IFNAME => {
                        let n = v.split(|b| *b == 0).next().unwrap_or_default();
                        name = Some(String::from_utf8_lossy(n).into_owned());
                    }
                    // rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes...
                    IFLA_STATS64 => bytes = (u64_at(16), u64_at(24)),
                    _ => {}
                }
            }
            out.extend(name.map(|n| (n, bytes.0, bytes.1)));
        };
        self.dump_raw_links(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            Ctx {
                op: "reading link counters",
                target: "",
            },
            &mut keep,
        )?;
        Ok(out)
    }

    /// Every bridge port of this namespace, with its master (name, index,
    /// master and MAC are filled in; kinds are not). The AF_BRIDGE dump:
    /// its messages carry no peer-namespace id, which the plain dump looks
    /// up for every veth in a list as long as the namespaces (quadratic
    /// with a thousand attachments).
    pub fn bridge_ports(&mut self) -> Result<Vec<LinkInfo>> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = netlink_packet_route::AddressFamily::Bridge;
        self.dump_links(
            RouteNetlinkMessage::GetLink(msg),
            Ctx {
                op: "listing bridge ports",
                target: "",
            },
        )
    }

    /// Creates a bridge, down, with a fixed MAC: without one the kernel
    /// gives the bridge the lowest MAC among its ports, which changes as
    /// ports come and go and makes neighbours' ARP caches stale. It stays
    /// down so that per-interface sysctls (IPv6 DAD) can be set before its
    /// first up.
    pub fn create_bridge(
        &mut self,
        name: &str,
        mac: [u8; 6],
        mtu: Option<u32>,
        group: Option<u32>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();

        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(group) = group {
            msg.attributes.push(LinkAttribute::Group(group));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "creating bridge",
                target: name,
            },
        )
    }

    /// Creates a veth pair; the host end comes up at once (on its bridge if
    /// `master` is set), the peer stays down until configured.
    pub fn create_veth(&mut self, spec: &VethSpec) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(spec.peer_name.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(spec.peer_netns.as_raw_fd()));
        if let Some(mtu) = spec.mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = spec.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }

        let mut msg = LinkMessage::default();
        if spec.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes
            .push(LinkAttribute::IfName(spec.host_name.to_string()));
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = spec.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        if let Some(group) = spec.group {
            msg.attributes.push(LinkAttribute::Group(group));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "creating veth",
                target: spec.host_name,
            },
        )
    }

    /// Sets a link's IPv6 address generation mode to none, bringing it up
    /// too when `up`: it gets no IPv6 link-local address, so no DAD, router
    /// solicitation or MLD for it. One request, and no lookup under
    /// /proc/sys, whose per-interface entries grow with the number of links
    /// (on the host) and of namespaces (the dentries of every namespace's
    /// `eth0` share one directory cache).
    pub fn set_without_ipv6_link_local(&mut self, index: u32, name: &str, up: bool) -> Result<()> {
        use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode};
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            Ctx {
                op: if up {
                    "bringing up (without IPv6 link-local) link"
                } else {
                    "turning off IPv6 link-local addresses of link"
                },
                target: name,
            },
        )
    }

    /// Brings a link up or down.
    pub fn set_up(&mut self, index: u32, name: &str, up: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            Ctx {
                op: if up {
                    "bringing up link"
                } else {
                    "bringing down link"
                },
                target: name,
            },
        )
    }

    /// Sets a link's MAC. Setting a bridge's MAC explicitly, even to the one
    /// it has, pins it: the kernel stops following the lowest port MAC.
    pub fn set_mac(&mut self, index: u32, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            Ctx {
                op: "setting MAC of link",
                target: name,
            },
        )
    }

    /// Sets an option of a bridge port (`ip link set dev X type
    /// bridge_slave hairpin on|isolated on`).
    pub fn set_port_option(&mut self, index: u32, name: &str, option: PortOption) -> Result<()> {
        let (attr, op) = match option {
            PortOption::Hairpin(on) => (InfoBridgePort::HairpinMode(on), "setting hairpin mode of"),
            PortOption::Isolated(on) => (InfoBridgePort::Isolated(on), "setting port isolation of"),
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::PortKind(InfoPortKind::Bridge),
            NlLinkInfo::PortData(InfoPortData::BridgePort(vec![attr])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            0,
            Ctx { op, target: name },
        )
    }

    /// Makes the kernel act on a link's pending carrier change now, as
    /// `ethtool`'s link query does (`ETHTOOL_GLINK` runs the link's
    /// linkwatch event synchronously): a bridge enables a port only once
    /// that event ran, and the kernel defers it up to a second when the
    /// two ends of a veth pair have the same interface index (common for
    /// ports in fresh namespaces). Returns whether the link has a carrier.
    pub fn sync_link_state(&mut self, name: &str) -> Result<bool> {
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        const ETHTOOL_GLINK: u32 = 0x0000_000a;
        let mut value = EthtoolValue {
            cmd: ETHTOOL_GLINK,
            data: 0,
        };
        // SAFETY: ifreq is plain old data, all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req
            .ifr_name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (&raw mut value).cast();
        // SAFETY: SIOCETHTOOL reads the ifreq and the ethtool_value it
        // points to, both alive for the call; a netlink socket answers
        // device ioctls of its namespace (sock_do_ioctl falls back to
        // dev_ioctl).
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
        if rc < 0 {
            return Err(super::Error::Kernel {
                op: "reading the link state of",
                target: name.to_string(),
                answer: std::io::Error::last_os_error(),
                ext_ack: None,
            });
        }
        Ok(value.data != 0)
    }

    /// Makes a link a port of a bridge (`ip link set X master BR`).
    pub fn set_master(&mut self, index: u32, name: &str, master: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Controller(master));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            Ctx {
                op: "adding a bridge port",
                target: name,
            },
        )
    }

    /// Moves a link into a link group.
    pub fn set_group(&mut self, index: u32, name: &str, group: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Group(group));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            Ctx {
                op: "setting link group of",
                target: name,
            },
        )
    }

    /// Deletes a link. Deleting either end of a veth deletes both.
    pub fn delete_link(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(
            RouteNetlinkMessage::DelLink(msg),
            0,
            Ctx {
                op: "deleting link",
                target: name,
            },
        )
    }

    /// Deletes every link of a group in one request. The kernel then waits
    /// for one RCU grace period for all of them (~0.5 ms per veth) instead
    /// of one per link (~20 ms each).
    pub fn delete_group(&mut self, group: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        self.request(
            RouteNetlinkMessage::DelLink(msg),
            0,
            Ctx {
                op: "deleting link group",
                target: &group.to_string(),
            },
        )
    }
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        kind: LinkKind::Other(String::new()),
        master: None,
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        group: 0,
    };
    if msg.header.flags.contains(LinkFlags::Loopback) {
        info.kind = LinkKind::Loopback;
    }
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Controller(m) => info.master = Some(*m),
            LinkAttribute::Mtu(m) => info.mtu = *m,
            LinkAttribute::Group(g) => info.group = *g,
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                info.mac = Some(mac);
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(kind) = i {
                        info.kind = match kind {
                            InfoKind::Bridge => LinkKind::Bridge,
                            InfoKind::Veth => LinkKind::Veth,
                            other => LinkKind::Other(other.to_string()),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// The `LinkInfo` of an RTM_NEWLINK payload (ifinfomsg, then attributes),
/// read directly: the same fields as `link_info`.
pub(super) fn parse_link(p: &[u8]) -> Option<LinkInfo> {
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_MASTER: u16 = 10;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_GROUP: u16 = 27;
    const IFLA_INFO_KIND: u16 = 1;
    let word = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let flags = word(p, 8)?;
    let mut info = LinkInfo {
        index: word(p, 4)?,
        name: String::new(),
        kind: if flags & libc::IFF_LOOPBACK as u32 != 0 {
            LinkKind::Loopback
        } else {
            LinkKind::Other(String::new())
        },
        master: None,
        mac: None,
        mtu: 0,
        up: flags & libc::IFF_UP as u32 != 0,
        group: 0,
    };
    let text = |v: &[u8]| {
        String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
    };
    for (kind, v) in super::attributes(p.get(16..)?) {
        match kind {
            IFLA_IFNAME => info.name = text(v),
            IFLA_MASTER => info.master = word(v, 0),
            IFLA_MTU => info.mtu = word(v, 0)?,
            IFLA_GROUP => info.group = word(v, 0)?,
            IFLA_ADDRESS if v.len() == 6 => info.mac = v.try_into().ok(),
            IFLA_LINKINFO => {
                for (k, kv) in super::attributes(v) {
                    if k == IFLA_INFO_KIND && !matches!(info.kind, LinkKind::Loopback) {
                        info.kind = match text(kv).as_str() {
                            "bridge" => LinkKind::Bridge,
                            "veth" => LinkKind::Veth,
                            other => LinkKind::Other(other.to_string()),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    Some(info)
}

/// A link request whose answers leave out the counters (most of a link
/// message, on a host with a thousand veths most of a dump): nsnet reads
/// names, kinds, flags, masters and groups only.
fn without_stats(mut msg: LinkMessage) -> LinkMessage {
    use netlink_packet_route::link::LinkExtentMask;
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    msg
}

#[cfg(test)]
mod raw_tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::{InfoKind, LinkInfo as NlLinkInfo};

    #[test]
    fn the_raw_reader_sees_what_the_parser_sees() {
        let mut msg = LinkMessage::default();
        msg.header.index = 42;
        msg.header.flags = LinkFlags::Up;
        msg.attributes
            .push(LinkAttribute::IfName("ve-a-1234567".into()));
        msg.attributes.push(LinkAttribute::Controller(7));
        msg.attributes.push(LinkAttribute::Mtu(1400));
        msg.attributes.push(LinkAttribute::Group(0x4000_0001));
        msg.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(
                InfoKind::Veth,
            )]));
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        assert_eq!(parse_link(&buf), Some(link_info(&msg)));
        assert_eq!(parse_link(&buf).unwrap().kind, LinkKind::Veth);
        assert_eq!(parse_link(&buf[..10]), None);
    }
}

//! Duplicate address detection on a LAN, before nsnet gives an address to
//! a namespace there: "does anyone hold this address?", asked on a host
//! interface.
//!
//! - IPv4: ARP probes (RFC 5227 section 2.1.1), ARP requests with sender
//!   address 0.0.0.0, so that no neighbour's cache learns anything. The
//!   holder answers (Linux does for secondary addresses too), and a host
//!   probing for the same address at the same time sends a probe of its
//!   own for it.
//! - IPv6: Neighbour Solicitations from the unspecified address to the
//!   target's solicited-node multicast group (RFC 4862 section 5.4): the
//!   holder answers with a Neighbour Advertisement to all nodes, and a
//!   host doing DAD for it at the same time sends a solicitation of its
//!   own.
//!
//! Several addresses are probed at once, twice each, and one wait covers
//! them all. Messages are built and parsed here (no I/O in either); the
//! sockets are AF_PACKET datagram sockets bound to the interface.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::packet::{self, PACKET_OUTGOING};
use crate::model::lan::LanHolder;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const ICMPV6: u8 = 58;
const NEIGHBOUR_SOLICITATION: u8 = 135;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("probing the LAN on {ifname} for addresses in use")]
    Io {
        ifname: String,
        #[source]
        source: io::Error,
    },
}

/// An ARP probe for `target` from `mac` (RFC 5227: sender IP 0.0.0.0,
/// target hardware address zero).
pub fn arp_probe(mac: [u8; 6], target: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    // sender IP 0.0.0.0 (bytes 14..18), target MAC zero (18..24)
    p[24..28].copy_from_slice(&target.octets());
    p
}

/// Who an ARP packet says holds one of `asked`: the sender of a reply or
/// announcement for it, or another host probing for it at the same time
/// (RFC 5227: both are conflicts). `None` for anything else.
pub fn arp_holder(packet: &[u8], asked: &[Ipv4Addr], own: [u8; 6]) -> Option<LanHolder> {
    if packet.len() < 28 || packet[0..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let op = u16::from_be_bytes([packet[6], packet[7]]);
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&packet[8..14]);
    let spa = Ipv4Addr::new(packet[14], packet[15], packet[16], packet[17]);
    let tpa = Ipv4Addr::new(packet[24], packet[25], packet[26], packet[27]);
    if sha == own {
        return None;
    }
    let address = match op {
        ARP_REPLY | ARP_REQUEST if asked.contains(&spa) => spa,
        ARP_REQUEST if spa.is_unspecified() && asked.contains(&tpa) => tpa,
        _ => return None,
    };
    Some(LanHolder {
        address: IpAddr::V4(address),
        mac: sha,
    })
}

/// The solicited-node multicast group of `target` (ff02::1:ffXX:XXXX)
/// and its Ethernet address (33:33:ff:XX:XX:XX).
pub fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    (group, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// The ICMPv6 checksum of `message` from `src` to `dst` (RFC 4443: over
/// the IPv6 pseudo-header and the message).
fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A DAD Neighbour Solicitation for `target` (RFC 4862 5.4.2): an IPv6
/// packet from :: to the solicited-node group, hop limit 255, no
/// source link-layer option.
pub fn neighbour_solicitation(target: Ipv6Addr) -> [u8; 64] {
    let (group, _) = solicited_node(target);
    let mut p = [0u8; 64];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&24u16.to_be_bytes());
    p[6] = ICMPV6;
    p[7] = 255;
    // source :: (8..24)
    p[24..40].copy_from_slice(&group.octets());
    let icmp = &mut p[40..];
    icmp[0] = NEIGHBOUR_SOLICITATION;
    icmp[8..24].copy_from_slice(&target.octets());
    let sum = icmpv6_checksum(&Ipv6Addr::UNSPECIFIED, &group, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Who an IPv6 packet from `from` (its Ethernet source) says holds one of
/// `asked`: the sender of a Neighbour Advertisement for it, or another
/// host doing DAD for it (a solicitation from ::). `None` otherwise.
pub fn nd_holder(
    packet: &[u8],
    from: [u8; 6],
    asked: &[Ipv6Addr],
    own: [u8; 6],
) -> Option<LanHolder> {
    if packet.len() < 64 || packet[0] >> 4 != 6 || packet[6] != ICMPV6 || from == own {
        return None;
    }
    let icmp = &packet[40..];
    let mut t = [0u8; 16];
    t.copy_from_slice(&icmp[8..24]);
    let target = Ipv6Addr::from(t);
    let src_unspecified = packet[8..24] == [0; 16];
    let answers = match icmp[0] {
        NEIGHBOUR_ADVERTISEMENT => true,
        NEIGHBOUR_SOLICITATION => src_unspecified,
        _ => false,
    };
    (answers && asked.contains(&target)).then_some(LanHolder {
        address: IpAddr::V6(target),
        mac: from,
    })
}

/// A non-blocking packet socket for `protocol` on one interface.
fn packet_socket(index: u32, protocol: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(0)))?;
    socket.set_nonblocking(true)?;
    packet::bind(&socket, index, protocol)?;
    Ok(socket)
}

fn send(socket: &Socket, index: u32, protocol: u16, to: [u8; 6], packet: &[u8]) -> io::Result<()> {
    let to = packet::link_address(index, protocol, Some(to));
    // SAFETY: packet and to are valid for the sizes given.
    let n = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The open sockets and what they were asked.
struct Probes {
    index: u32,
    mac: [u8; 6],
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    arp: Option<Socket>,
    nd: Option<Socket>,
}

impl Probes {
    fn open(index: u32, mac: [u8; 6], addrs: &[IpAddr]) -> io::Result<Probes> {
        let v4: Vec<Ipv4Addr> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v) => Some(*v),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<Ipv6Addr> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v) => Some(*v),
                IpAddr::V4(_) => None,
            })
            .collect();
        let arp = (!v4.is_empty())
            .then(|| packet_socket(index, ETH_P_ARP))
            .transpose()?;
        let nd = (!v6.is_empty())
            .then(|| packet_socket(index, ETH_P_IPV6))
            .transpose()?;
        Ok(Probes {
            index,
            mac,
            v4,
            v6,
            arp,
            nd,
        })
    }

    fn send_all(&self) -> io::Result<()> {
        if let Some(s) = &self.arp {
            for a in &self.v4 {
                send(
                    s,
                    self.index,
                    ETH_P_ARP,
                    [0xff; 6],
                    &arp_probe(self.mac, *a),
                )?;
            }
        }
        if let Some(s) = &self.nd {
            for a in &self.v6 {
                let (_, group_mac) = solicited_node(*a);
                send(
                    s,
                    self.index,
                    ETH_P_IPV6,
                    group_mac,
                    &neighbour_solicitation(*a),
                )?;
            }
        }
        Ok(())
    }

    /// Reads both sockets until `deadline`, collecting holders.
    fn collect(&self, deadline: Instant, found: &mut Vec<LanHolder>) -> io::Result<()> {
        let sockets: Vec<(&Socket, bool)> = [(&self.arp, true), (&self.nd, false)]
            .into_iter()
            .filter_map(|(s, arp)| s.as_ref().map(|s| (s, arp)))
            .collect();
        let mut buf = [0u8; 1600];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            // poll's timeout is a high-resolution timer; a socket's receive
            // timeout counts in jiffies and overshoots by up to 10 ms.
            let mut fds: Vec<libc::pollfd> = sockets
                .iter()
                .map(|(s, _)| libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let wait = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: fds is a valid array of that many pollfds.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if ready == 0 {
                return Ok(());
            }
            for ((socket, arp), fd) in sockets.iter().zip(&fds) {
                if fd.revents & libc::POLLIN == 0 {
                    continue;
                }
                while let Some((n, from)) = receive(socket, &mut buf)? {
                    let packet = &buf[..n];
                    let holder = match arp {
                        true => arp_holder(packet, &self.v4, self.mac),
                        false => nd_holder(packet, from, &self.v6, self.mac),
                    };
                    if let Some(h) =
                        holder.filter(|h| !found.iter().any(|f| f.address == h.address))
                    {
                        found.push(h);
                    }
                }
            }
        }
    }
}

/// One packet that came in (not one this host sent), with its Ethernet
/// source; `None` when there is none waiting.
fn receive(socket: &Socket, buf: &mut [u8]) -> io::Result<Option<(usize, [u8; 6])>> {
    loop {
        let (n, from) = match packet::receive(socket, buf, 0) {
            Ok(got) => got,
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            },
        };
        if from.sll_pkttype == PACKET_OUTGOING {
            continue;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&from.sll_addr[..6]);
        return Ok(Some((n, mac)));
    }
}

/// Probes the LAN on interface `index` (named `ifname`, MAC `mac`) for
/// `addrs`: two probes each, half of `wait` apart, then the rest of
/// `wait` for answers. Returns who answered, by address.
pub fn probe(
    ifname: &str,
    index: u32,
    mac: [u8; 6],
    addrs: &[IpAddr],
    wait: Duration,
) -> Result<Vec<LanHolder>, Error> {
    let fail = |source| Error::Io {
        ifname: ifname.to_string(),
        source,
    };
    let mut found = Vec::new();
    if addrs.is_empty() {
        return Ok(found);
    }
    let probes = Probes::open(index, mac, addrs).map_err(fail)?;
    let start = Instant::now();
    for round in 0..2u32 {
        probes.send_all().map_err(fail)?;
        probes
            .collect(start + wait * (round + 1) / 2, &mut found)
            .map_err(fail)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 0x50];

    fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut p = arp_probe(sha, Ipv4Addr::from(tpa)).to_vec();
        p[6..8].copy_from_slice(&op.to_be_bytes());
        p[14..18].copy_from_slice(&spa);
        p
    }

    #[test]
    fn an_arp_probe_is_an_rfc_5227_request() {
        let p = arp_probe(OWN, Ipv4Addr::new(192, 0, 2, 50));
        assert_eq!(p[..8], [0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(p[8..14], OWN);
        assert_eq!(p[14..24], [0; 10], "sender IP and target MAC are zero");
        assert_eq!(p[24..], [192, 0, 2, 50]);
    }

    #[test]
    fn arp_replies_announcements_and_rival_probes_are_holders_and_the_rest_is_not() {
        let asked = [Ipv4Addr::new(192, 0, 2, 50), Ipv4Addr::new(192, 0, 2, 51)];
        let cases: Vec<(Vec<u8>, Option<[u8; 4]>)> = vec![
            (
                arp(2, OTHER, [192, 0, 2, 50], [0; 4]),
                Some([192, 0, 2, 50]),
            ),
            (
                arp(1, OTHER, [192, 0, 2, 51], [192, 0, 2, 51]),
                Some([192, 0, 2, 51]),
            ),
            (
                arp(1, OTHER, [0; 4], [192, 0, 2, 51]),
                Some([192, 0, 2, 51]),
            ),
            (arp(2, OTHER, [192, 0, 2, 9], [0; 4]), None),
            (arp(1, OTHER, [192, 0, 2, 9], [192, 0, 2, 50]), None),
            (arp(2, OWN, [192, 0, 2, 50], [0; 4]), None),
            (vec![0; 10], None),
        ];
        for (packet, want) in cases {
            let got = arp_holder(&packet, &asked, OWN);
            assert_eq!(
                got.map(|h| h.address),
                want.map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                "{packet:?}"
            );
            if let Some(h) = got {
                assert_eq!(h.mac, OTHER);
            }
        }
    }

    #[test]
    fn a_neighbour_solicitation_is_rfc_4862_dad() {
        let target: Ipv6Addr = "2001:db8::1:2345".parse().unwrap();
        let (group, mac) = solicited_node(target);
        assert_eq!(group, "ff02::1:ff01:2345".parse::<Ipv6Addr>().unwrap());
        assert_eq!(mac, [0x33, 0x33, 0xff, 0x01, 0x23, 0x45]);
        let p = neighbour_solicitation(target);
        assert_eq!((p[0], p[6], p[7]), (0x60, ICMPV6, 255));
        assert_eq!(p[8..24], [0; 16], "from the unspecified address");
        assert_eq!(p[24..40], group.octets());
        assert_eq!(p[40], NEIGHBOUR_SOLICITATION);
        assert_eq!(p[48..64], target.octets());
        // A correct checksum sums, with itself, to 0xffff.
        assert_eq!(icmpv6_checksum(&Ipv6Addr::UNSPECIFIED, &group, &p[40..]), 0);
    }

    #[test]
    fn advertisements_and_rival_dad_are_holders_and_the_rest_is_not() {
        let mine: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let asked = [mine];
        let advert = |target: Ipv6Addr, src: Ipv6Addr| {
            let mut p = neighbour_solicitation(target).to_vec();
            p[8..24].copy_from_slice(&src.octets());
            p[40] = NEIGHBOUR_ADVERTISEMENT;
            p
        };
        let solicit = |src: Ipv6Addr| {
            let mut p = neighbour_solicitation(mine).to_vec();
            p[8..24].copy_from_slice(&src.octets());
            p
        };
        let other: Ipv6Addr = "2001:db8::99".parse().unwrap();
        let cases = [
            (advert(mine, mine), OTHER, true),
            (solicit(Ipv6Addr::UNSPECIFIED), OTHER, true),
            (solicit(other), OTHER, false),
            (advert(other, other), OTHER, false),
            (advert(mine, mine), OWN, false),
            (vec![0x60; 20], OTHER, false),
        ];
        for (packet, from, holds) in cases {
            let got = nd_holder(&packet, from, &asked, OWN);
            assert_eq!(got.is_some(), holds, "{packet:?}");
            if let Some(h) = got {
                assert_eq!((h.address, h.mac), (IpAddr::V6(mine), OTHER));
            }
        }
    }
}

//! ARP probes (RFC 5227 section 2.1.1): "does anyone hold this IPv4
//! address?", asked on a host interface before nsnet gives the address to
//! a namespace on the LAN. A probe is an ARP request with sender address
//! 0.0.0.0, so that no neighbour's cache learns anything from it; whoever
//! holds the address answers (Linux answers for secondary addresses too),
//! and whoever is probing for it at the same time sends a probe of its own
//! for it. Several addresses are probed at once, twice each, and one wait
//! covers them all.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::model::lan::LanHolder;

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const PACKET_OUTGOING: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("probing the LAN on {ifname} for addresses in use (ARP)")]
    Io {
        ifname: String,
        #[source]
        source: io::Error,
    },
}

/// An ARP probe for `target` from `mac` (RFC 5227: sender IP 0.0.0.0,
/// target hardware address zero).
pub fn probe_packet(mac: [u8; 6], target: Ipv4Addr) -> [u8; 28] {
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
pub fn holder_in(packet: &[u8], asked: &[Ipv4Addr], own: [u8; 6]) -> Option<LanHolder> {
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

/// A packet socket for ARP on one interface. Made with protocol 0 (no
/// frames yet) and bound with the protocol and the interface in one go:
/// a socket made with its protocol already receives from every interface,
/// and rebinding it waits for an RCU grace period (13 ms here).
fn packet_socket(index: u32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(0)))?;
    socket.set_nonblocking(true)?;
    let sll = link_address(index, false);
    // SAFETY: sll lives across the call and its size is given.
    let r = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn link_address(index: u32, broadcast: bool) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll; the fields set make it one
    // for this interface.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ARP.to_be();
    sll.sll_ifindex = index as i32;
    if broadcast {
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    }
    sll
}

fn send(socket: &Socket, index: u32, packet: &[u8]) -> io::Result<()> {
    let to = link_address(index, true);
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

/// Reads ARP packets until `deadline`, collecting holders of `asked`.
fn collect(
    socket: &Socket,
    asked: &[Ipv4Addr],
    own: [u8; 6],
    deadline: Instant,
    found: &mut Vec<LanHolder>,
) -> io::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        // poll's timeout is a high-resolution timer; a socket's receive
        // timeout counts in jiffies and overshoots by up to 10 ms.
        let mut fds = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let wait = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, its count given.
        let ready = unsafe { libc::poll(&mut fds, 1, wait) };
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
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buf and from are valid for the sizes given.
        let n = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                std::ptr::addr_of_mut!(from).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        if from.sll_pkttype == PACKET_OUTGOING {
            continue;
        }
        if let Some(h) = holder_in(&buf[..n as usize], asked, own) {
            if !found.iter().any(|f| f.address == h.address) {
                found.push(h);
            }
        }
    }
}

/// Probes the LAN on interface `index` (named `ifname`, MAC `mac`) for
/// `addrs`: two probes each, half of `wait` apart, then the rest of
/// `wait` for answers. Returns who answered, by address.
pub fn probe(
    ifname: &str,
    index: u32,
    mac: [u8; 6],
    addrs: &[Ipv4Addr],
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
    let socket = packet_socket(index).map_err(fail)?;
    let start = Instant::now();
    for round in 0..2u32 {
        for a in addrs {
            send(&socket, index, &probe_packet(mac, *a)).map_err(fail)?;
        }
        let until = start + wait * (round + 1) / 2;
        collect(&socket, addrs, mac, until, &mut found).map_err(fail)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 0x50];

    fn reply(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut p = probe_packet(sha, Ipv4Addr::from(tpa)).to_vec();
        p[6..8].copy_from_slice(&op.to_be_bytes());
        p[14..18].copy_from_slice(&spa);
        p
    }

    #[test]
    fn a_probe_is_an_rfc_5227_request() {
        let p = probe_packet(OWN, Ipv4Addr::new(192, 0, 2, 50));
        assert_eq!(p[..8], [0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(p[8..14], OWN);
        assert_eq!(p[14..24], [0; 10], "sender IP and target MAC are zero");
        assert_eq!(p[24..], [192, 0, 2, 50]);
    }

    #[test]
    fn replies_announcements_and_rival_probes_are_holders_and_the_rest_is_not() {
        let asked = [Ipv4Addr::new(192, 0, 2, 50), Ipv4Addr::new(192, 0, 2, 51)];
        let cases: Vec<(Vec<u8>, Option<[u8; 4]>)> = vec![
            (
                reply(2, OTHER, [192, 0, 2, 50], [0; 4]),
                Some([192, 0, 2, 50]),
            ),
            (
                reply(1, OTHER, [192, 0, 2, 51], [192, 0, 2, 51]),
                Some([192, 0, 2, 51]),
            ),
            (
                reply(1, OTHER, [0; 4], [192, 0, 2, 51]),
                Some([192, 0, 2, 51]),
            ),
            (reply(2, OTHER, [192, 0, 2, 9], [0; 4]), None),
            (reply(1, OTHER, [192, 0, 2, 9], [192, 0, 2, 50]), None),
            (reply(2, OWN, [192, 0, 2, 50], [0; 4]), None),
            (vec![0; 10], None),
        ];
        for (packet, want) in cases {
            let got = holder_in(&packet, &asked, OWN);
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
}

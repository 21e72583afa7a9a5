//! ICMP and ICMPv6 echo from inside a namespace, without iputils.
//!
//! Raw sockets are used because a fresh namespace has
//! `net.ipv4.ping_group_range = 1 0`: unprivileged (datagram) ICMP sockets
//! are refused there even for root. The socket is opened on a thread inside
//! the namespace and then used from the caller's thread.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::kernel::netns;
use crate::model::NsRef;

/// Payload bytes after the 8-byte ICMP header, as ping(8) sends by default.
pub const PAYLOAD: usize = 56;
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error("opening an ICMP socket in namespace {ns}")]
    Socket { ns: String, source: io::Error },
    #[error("sending echo request to {dest}")]
    Send { dest: IpAddr, source: io::Error },
    #[error("receiving echo reply from {dest}")]
    Receive { dest: IpAddr, source: io::Error },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub count: u32,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// Time between requests.
    pub interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            count: 4,
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
        }
    }
}

/// One reply.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reply {
    pub seq: u16,
    pub bytes: usize,
    /// IPv4 TTL; IPv6 raw sockets do not show the hop limit without
    /// ancillary data, so it is left out there.
    pub ttl: Option<u8>,
    pub rtt: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub transmitted: u32,
    pub received: u32,
    pub elapsed: Duration,
    pub rtts: Vec<Duration>,
}

/// The internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![0u8; 8 + PAYLOAD];
    pkt[0] = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    pkt[4..6].copy_from_slice(&id.to_be_bytes());
    pkt[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in pkt[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    if !v6 {
        // The kernel computes ICMPv6 checksums itself (it needs the
        // pseudo-header); ICMPv4 ones are ours.
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    pkt
}

/// Parses a received packet; `Some((seq, icmp_len, ttl))` for our reply.
fn parse_reply(v6: bool, buf: &[u8], id: u16) -> Option<(u16, usize, Option<u8>)> {
    let (icmp, ttl) = if v6 {
        (buf, None)
    } else {
        // Raw IPv4 sockets deliver the IP header too.
        let ihl = usize::from(buf.first()? & 0x0f) * 4;
        (buf.get(ihl..)?, buf.get(8).copied())
    };
    let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp.len() < 8 || icmp[0] != want {
        return None;
    }
    if u16::from_be_bytes([icmp[4], icmp[5]]) != id {
        return None;
    }
    Some((u16::from_be_bytes([icmp[6], icmp[7]]), icmp.len(), ttl))
}

/// Sends `opts.count` echo requests from inside `ns` to `dest`, calling
/// `on_reply` for each reply as it comes.
pub fn ping(
    ns: &NsRef,
    dest: IpAddr,
    opts: &Options,
    mut on_reply: impl FnMut(&Reply),
) -> Result<Summary, Error> {
    let v6 = dest.is_ipv6();
    let fd = netns::open(ns)?;
    let socket = netns::in_netns(fd.as_fd(), &ns.to_string(), || {
        let (domain, proto) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        Socket::new(domain, Type::RAW, Some(proto))
    })?
    .map_err(|source| Error::Socket {
        ns: ns.to_string(),
        source,
    })?;
    let target = SockAddr::from(SocketAddr::new(dest, 0));
    // Tell our own requests apart from other pings in the namespace.
    let id = (std::process::id() as u16) ^ 0x6e73;
    let start = Instant::now();
    let mut summary = Summary {
        transmitted: 0,
        received: 0,
        elapsed: Duration::ZERO,
        rtts: Vec::new(),
    };
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    for i in 0..opts.count {
        let seq = (i + 1) as u16;
        let sent = Instant::now();
        socket
            .send_to(&echo_request(v6, id, seq), &target)
            .map_err(|source| Error::Send { dest, source })?;
        summary.transmitted += 1;
        let deadline = sent + opts.timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            socket
                .set_read_timeout(Some(deadline - now))
                .map_err(|source| Error::Receive { dest, source })?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Receive { dest, source }),
            };
            if from.as_socket().map(|s| s.ip()) != Some(dest) {
                continue;
            }
            // SAFETY: recv_from initialised the first `n` bytes of `buf`.
            let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            if let Some((rseq, bytes, ttl)) = parse_reply(v6, data, id) {
                if rseq != seq {
                    continue;
                }
                let reply = Reply {
                    seq,
                    bytes,
                    ttl,
                    rtt: sent.elapsed(),
                };
                summary.received += 1;
                summary.rtts.push(reply.rtt);
                on_reply(&reply);
                break;
            }
        }
        if i + 1 < opts.count {
            let next = sent + opts.interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_request_verifies() {
        let pkt = echo_request(false, 0x1234, 1);
        assert_eq!(checksum(&pkt), 0);
    }

    #[test]
    fn replies_are_matched_by_id() {
        let mut reply = echo_request(true, 7, 3);
        reply[0] = ECHO_REPLY_V6;
        assert_eq!(parse_reply(true, &reply, 7), Some((3, 64, None)));
        assert_eq!(parse_reply(true, &reply, 8), None);
        let mut v4 = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 63, 1, 0, 0];
        v4.resize(20, 0);
        let mut icmp = echo_request(false, 7, 2);
        icmp[0] = ECHO_REPLY_V4;
        v4.extend_from_slice(&icmp);
        assert_eq!(parse_reply(false, &v4, 7), Some((2, 64, Some(63))));
    }
}

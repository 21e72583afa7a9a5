//! ICMP and ICMPv6 echo from inside a namespace, without iputils.
//!
//! Raw sockets are used because a fresh namespace has
//! `net.ipv4.ping_group_range = 1 0`: unprivileged (datagram) ICMP sockets
//! are refused there even for root. The socket is opened on a thread inside
//! the namespace and then used from the caller's thread.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// How long to wait after the last request when no reply came.
    pub timeout: Duration,
    /// Time between requests.
    pub interval: Duration,
    /// Set (by a signal handler, say) to stop early: the summary covers
    /// what was sent until then.
    pub stop: Option<&'static AtomicBool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            count: 4,
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            stop: None,
        }
    }
}

impl Options {
    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// One reply.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reply {
    pub seq: u16,
    pub bytes: usize,
    /// IPv4 TTL, or the IPv6 hop limit (from ancillary data).
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

/// The address of a `sockaddr_storage` the kernel filled in.
fn source_ip(from: &libc::sockaddr_storage) -> Option<IpAddr> {
    let ptr: *const libc::sockaddr_storage = from;
    match i32::from(from.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it holds a sockaddr_in, which fits.
            let sin = unsafe { &*ptr.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it holds a sockaddr_in6, which fits.
            let sin6 = unsafe { &*ptr.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

/// A raw ICMP (or ICMPv6, with hop limits) socket inside `ns`.
fn icmp_socket(ns: &NsRef, v6: bool) -> Result<Socket, Error> {
    let fd = netns::open(ns)?;
    let fail = |source| Error::Socket {
        ns: ns.to_string(),
        source,
    };
    let socket = netns::in_netns(fd.as_fd(), &ns.to_string(), || {
        let (domain, proto) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        Socket::new(domain, Type::RAW, Some(proto))
    })?
    .map_err(fail)?;
    if v6 {
        socket.set_recv_hoplimit_v6(true).map_err(fail)?;
    }
    Ok(socket)
}

/// Receives one datagram; for IPv6 also the hop limit it arrived with
/// (`IPV6_RECVHOPLIMIT` must be on).
fn receive(socket: &Socket, buf: &mut [u8]) -> io::Result<(usize, Option<IpAddr>, Option<u8>)> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive
    // the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // `as _`: the field is a size_t in glibc and a socklen_t in musl.
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at valid buffers of the lengths given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut hop_limit = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                hop_limit = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, source_ip(&from), hop_limit))
}

/// The identifier of this process's echo requests: tells them apart from
/// other pings in the namespace (and lets `trace --probe` match them).
pub fn echo_id() -> u16 {
    (std::process::id() as u16) ^ 0x6e73
}

/// Sends `opts.count` echo requests from inside `ns` to `dest`, one every
/// `opts.interval`, calling `on_reply` for each reply as it comes, as
/// ping(8) does: a reply counts whenever it arrives, also after the next
/// request went out; after the last request ping waits for the missing
/// replies `opts.timeout` when none has come yet, else twice the longest
/// round trip (at least one interval).
pub fn ping(
    ns: &NsRef,
    dest: IpAddr,
    opts: &Options,
    mut on_reply: impl FnMut(&Reply),
) -> Result<Summary, Error> {
    let v6 = dest.is_ipv6();
    let socket = icmp_socket(ns, v6)?;
    let target = SockAddr::from(SocketAddr::new(dest, 0));
    let id = echo_id();
    let start = Instant::now();
    let mut summary = Summary {
        transmitted: 0,
        received: 0,
        elapsed: Duration::ZERO,
        rtts: Vec::new(),
    };
    // When each request went out, and whether its reply came.
    let mut sent: Vec<(Instant, bool)> = Vec::new();
    let mut next = start;
    let mut end = None;
    let mut buf = [0u8; 2048];
    while !opts.stopped() && summary.received < opts.count {
        let now = Instant::now();
        if summary.transmitted < opts.count && now >= next {
            let seq = (summary.transmitted + 1) as u16;
            socket
                .send_to(&echo_request(v6, id, seq), &target)
                .map_err(|source| Error::Send { dest, source })?;
            summary.transmitted += 1;
            sent.push((now, false));
            next = now + opts.interval;
            if summary.transmitted == opts.count {
                end = Some(now + linger(&summary, opts));
            }
            continue;
        }
        let until = end.unwrap_or(next);
        if now >= until {
            break;
        }
        let Some((seq, bytes, ttl)) = receive_reply(&socket, &mut buf, v6, id, dest, until)? else {
            continue;
        };
        let Some((at, answered)) = request_of(seq, &mut sent).filter(|(_, answered)| !*answered)
        else {
            continue; // a duplicate
        };
        *answered = true;
        let reply = Reply {
            seq,
            bytes,
            ttl,
            rtt: at.elapsed(),
        };
        summary.received += 1;
        summary.rtts.push(reply.rtt);
        on_reply(&reply);
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// The newest of the requests `sent` that carried `seq` (sequence numbers
/// wrap after 65535 requests).
fn request_of(seq: u16, sent: &mut [(Instant, bool)]) -> Option<&mut (Instant, bool)> {
    let back = usize::from((sent.len() as u16).wrapping_sub(seq));
    let i = sent.len().checked_sub(back + 1)?;
    sent.get_mut(i)
}

/// How long ping waits after its last request: `opts.timeout` when no
/// reply came yet, else twice the longest round trip, at least one interval
/// (ping(8)'s rule).
fn linger(summary: &Summary, opts: &Options) -> Duration {
    match summary.rtts.iter().max() {
        None => opts.timeout,
        Some(max) => (*max * 2).max(opts.interval),
    }
}

/// Waits until `until` at the latest for one of our echo replies from
/// `dest`: `Some((seq, bytes, ttl))`, or `None` when the wait ended (time
/// up, a signal, another packet).
fn receive_reply(
    socket: &Socket,
    buf: &mut [u8],
    v6: bool,
    id: u16,
    dest: IpAddr,
    until: Instant,
) -> Result<Option<(u16, usize, Option<u8>)>, Error> {
    // In slices, so that a stop that comes just before the wait is seen.
    let wait = until
        .saturating_duration_since(Instant::now())
        .min(Duration::from_millis(100));
    if wait.is_zero() {
        return Ok(None);
    }
    let fail = |source| Error::Receive { dest, source };
    socket.set_read_timeout(Some(wait)).map_err(fail)?;
    let (n, from, hop_limit) = match receive(socket, buf) {
        Ok(r) => r,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            return Ok(None)
        }
        Err(source) => return Err(fail(source)),
    };
    if from != Some(dest) {
        return Ok(None);
    }
    Ok(parse_reply(v6, &buf[..n], id).map(|(seq, bytes, ttl)| (seq, bytes, ttl.or(hop_limit))))
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
    fn a_reply_finds_its_request_also_after_sequence_numbers_wrap() {
        let t = Instant::now();
        let mut sent: Vec<(Instant, bool)> = (0..65_537u32)
            .map(|i| (t + Duration::from_millis(u64::from(i)), false))
            .collect();
        let at = |seq, sent: &mut Vec<(Instant, bool)>| {
            request_of(seq, sent).map(|(at, _)| at.duration_since(t).as_millis())
        };
        assert_eq!(at(1, &mut sent), Some(65_536), "the newest seq 1");
        assert_eq!(at(65_535, &mut sent), Some(65_534));
        sent.truncate(3);
        assert_eq!(at(1, &mut sent), Some(0));
        assert_eq!(at(3, &mut sent), Some(2));
        assert_eq!(at(4, &mut sent), None, "not sent yet");
    }

    #[test]
    fn the_wait_after_the_last_request_is_ping8s() {
        let opts = Options {
            timeout: Duration::from_secs(10),
            interval: Duration::from_millis(200),
            ..Options::default()
        };
        let ms = Duration::from_millis;
        for (rtts, want) in [
            (vec![], ms(10_000)),
            (vec![ms(1), ms(3)], ms(200)),
            (vec![ms(150), ms(40)], ms(300)),
        ] {
            let summary = Summary {
                transmitted: 2,
                received: rtts.len() as u32,
                elapsed: Duration::ZERO,
                rtts,
            };
            assert_eq!(linger(&summary, &opts), want);
        }
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

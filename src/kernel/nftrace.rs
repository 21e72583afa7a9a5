//! What the kernel actually does with one packet: a rule that sets the
//! packet's nftrace bit (`meta nftrace set 1`, matching only the probe:
//! its addresses, protocol and source port or echo id), in a table of its
//! own, and the trace events nf_tables then sends for every rule and
//! policy the packet meets (`nft monitor trace` reads the same group).
//!
//! The table carries `NFT_TABLE_F_OWNER`: the kernel deletes it when the
//! netlink socket that made it closes, so no rule outlives the probe,
//! whether it ends, fails or is killed (SIGKILL included).
//!
//! Hand-written messages, as the rest of `nfnetlink`: the crates that speak
//! nf_tables natively are GPL (rustables) or wrap the C libraries
//! (nftnl/mnl), and `nft` cannot own a table for longer than its own run.
//! Message building does no I/O.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::nfnetlink::{
    attr, batch_message as msg, error_code, find, messages, NLMSG_ERROR, NLM_F_ACK,
};

const SUBSYS: u16 = 10;
const BATCH_BEGIN: u16 = 16;
const BATCH_END: u16 = 17;
const GROUP_NFTRACE: u32 = 9;
const MSG_NEWTABLE: u16 = 0;
const MSG_NEWCHAIN: u16 = 3;
const MSG_NEWRULE: u16 = 6;
const MSG_TRACE: u16 = 17;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const TABLE_F_OWNER: u32 = 2;
const REG_1: u32 = 1;

/// The table's name: one per process.
pub fn table_name() -> String {
    format!("nsnet_probe_{}", std::process::id())
}

/// Where the probe's rule sits: before everything else on the hook.
pub const PRIORITY: i32 = -500;

/// The packet to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPPROTO_TCP, _UDP, _ICMP or _ICMPV6.
    pub l4proto: u8,
    /// The source port (TCP, UDP), or the echo identifier (ICMP).
    pub id: u16,
}

/// A netfilter hook the probe's chain hangs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Output = 3,
}

/// One trace event: a rule that gave a verdict, a policy, a return.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// The kernel's id of the traced packet (a SYN and its retransmit
    /// differ).
    #[serde(skip)]
    pub id: u32,
    pub family: String,
    pub table: String,
    pub chain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// `rule`, `policy` or `return`.
    pub kind: &'static str,
    /// `accept`, `drop`, `continue`, `jump`, `goto`, `return`...
    pub verdict: String,
}

fn family_name(f: u8) -> &'static str {
    match f {
        1 => "inet",
        2 => "ip",
        10 => "ip6",
        7 => "bridge",
        5 => "netdev",
        3 => "arp",
        _ => "?",
    }
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | NLA_F_NESTED, &parts.concat())
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn expr(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
    nested(1, &[attr(1, &cstr(name)), nested(2, data)])
}

/// `payload load BASE OFFSET LEN => reg 1; cmp eq reg 1 VALUE`.
fn payload_eq(base: u32, offset: u32, value: &[u8]) -> Vec<u8> {
    let load = expr(
        "payload",
        &[
            attr(1, &be32(REG_1)),
            attr(2, &be32(base)),
            attr(3, &be32(offset)),
            attr(4, &be32(value.len() as u32)),
        ],
    );
    [load, cmp_eq(value)].concat()
}

fn cmp_eq(value: &[u8]) -> Vec<u8> {
    expr(
        "cmp",
        &[
            attr(1, &be32(REG_1)),
            attr(2, &be32(0)),
            nested(3, &[attr(1, value)]),
        ],
    )
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The rule's expressions: the probe's addresses, protocol and id, then
/// `meta nftrace set 1`.
fn rule_exprs(m: &Matcher) -> Vec<u8> {
    const NETWORK: u32 = 1;
    const TRANSPORT: u32 = 2;
    let (src_off, dst_off) = if m.src.is_ipv4() { (12, 16) } else { (8, 24) };
    let meta_l4 = expr("meta", &[attr(1, &be32(REG_1)), attr(2, &be32(16))]);
    let id_off = if matches!(m.l4proto, 1 | 58) { 4 } else { 0 };
    let parts = [
        payload_eq(NETWORK, src_off, &ip_bytes(m.src)),
        payload_eq(NETWORK, dst_off, &ip_bytes(m.dst)),
        meta_l4,
        cmp_eq(&[m.l4proto]),
        payload_eq(TRANSPORT, id_off, &m.id.to_be_bytes()),
        expr(
            "immediate",
            &[attr(1, &be32(REG_1)), nested(2, &[attr(1, &[1])])],
        ),
        expr("meta", &[attr(2, &be32(12)), attr(3, &be32(REG_1))]),
    ];
    nested(4, &parts)
}

/// The batch that makes the owned table, a base chain per hook and the
/// rule in each.
pub fn setup_batch(m: &Matcher, hooks: &[Hook], seq: u32) -> Vec<u8> {
    let family: u8 = if m.src.is_ipv4() { 2 } else { 10 };
    let table = table_name();
    let kind = |k: u16| (SUBSYS << 8) | k;
    let mut out = msg(BATCH_BEGIN, 0, seq, 0, SUBSYS, &[]);
    out.extend(msg(
        kind(MSG_NEWTABLE),
        NLM_F_CREATE | NLM_F_ACK,
        seq + 1,
        family,
        0,
        &[attr(1, &cstr(&table)), attr(2, &be32(TABLE_F_OWNER))].concat(),
    ));
    for (i, hook) in hooks.iter().enumerate() {
        let chain = format!("probe{i}");
        let hook_attr = nested(
            4,
            &[
                attr(1, &be32(*hook as u32)),
                attr(2, &(PRIORITY as u32).to_be_bytes()),
            ],
        );
        out.extend(msg(
            kind(MSG_NEWCHAIN),
            NLM_F_CREATE | NLM_F_ACK,
            seq + 2 + 2 * i as u32,
            family,
            0,
            &[
                attr(1, &cstr(&table)),
                attr(3, &cstr(&chain)),
                hook_attr,
                attr(5, &be32(1)),
                attr(7, &cstr("filter")),
            ]
            .concat(),
        ));
        out.extend(msg(
            kind(MSG_NEWRULE),
            NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
            seq + 3 + 2 * i as u32,
            family,
            0,
            &[
                attr(1, &cstr(&table)),
                attr(2, &cstr(&chain)),
                rule_exprs(m),
            ]
            .concat(),
        ));
    }
    out.extend(msg(
        BATCH_END,
        0,
        seq + 2 + 2 * hooks.len() as u32,
        0,
        SUBSYS,
        &[],
    ));
    out
}

/// A trace event, from an NFT_MSG_TRACE payload (after the nlmsghdr).
pub fn parse_event(payload: &[u8]) -> Option<Event> {
    let family = *payload.first()?;
    let body = payload.get(4..)?;
    let text = |k: u16| {
        find(body, k).map(|(v, _)| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .to_string()
        })
    };
    let u32_of = |k: u16| {
        find(body, k).and_then(|(v, _)| v.get(..4)?.try_into().ok().map(u32::from_be_bytes))
    };
    let kind = match u32_of(4)? {
        1 => "policy",
        2 => "return",
        3 => "rule",
        _ => return None,
    };
    let handle =
        find(body, 3).and_then(|(v, _)| v.get(..8)?.try_into().ok().map(u64::from_be_bytes));
    let verdict = match kind {
        "policy" => match u32_of(16) {
            Some(0) => "drop".to_string(),
            _ => "accept".to_string(),
        },
        _ => {
            let code = find(body, 5)
                .and_then(|(v, _)| find(v, 1))
                .and_then(|(c, _)| c.get(..4)?.try_into().ok().map(i32::from_be_bytes));
            match code {
                Some(0) => "drop",
                Some(1) => "accept",
                Some(-1) => "continue",
                Some(-2) => "break",
                Some(-3) => "jump",
                Some(-4) => "goto",
                Some(-5) => "return",
                Some(_) => "other",
                None => "continue",
            }
            .to_string()
        }
    };
    Some(Event {
        id: u32_of(6).unwrap_or(0),
        family: family_name(family).to_string(),
        table: text(1)?,
        chain: text(2)?,
        handle,
        kind,
        verdict,
    })
}

/// The probe's table, alive while this lives, and its trace events.
pub struct Tracer {
    socket: Socket,
    buf: Vec<u8>,
}

impl Tracer {
    /// Makes the table and joins the trace group (in the calling thread's
    /// network namespace).
    pub fn start(m: &Matcher, hooks: &[Hook]) -> io::Result<Tracer> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let batch = setup_batch(m, hooks, 1);
        socket.send(&batch, 0)?;
        let expected = 1 + 2 * hooks.len();
        let mut acks = 0;
        let mut buf = Vec::with_capacity(64 * 1024);
        while acks < expected {
            buf.clear();
            let n = socket.recv(&mut buf, 0)?;
            for (kind, payload) in messages(&buf[..n]) {
                if kind == NLMSG_ERROR {
                    let code = error_code(payload);
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(code));
                    }
                    acks += 1;
                }
            }
        }
        socket.add_membership(GROUP_NFTRACE)?;
        socket.set_non_blocking(true)?;
        Ok(Tracer { socket, buf })
    }

    /// Adds the events that have arrived to `out` (without waiting).
    pub fn drain(&mut self, out: &mut Vec<Event>) -> io::Result<()> {
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(n) => {
                    for (kind, payload) in messages(&self.buf[..n]) {
                        if kind == (SUBSYS << 8) | MSG_TRACE {
                            out.extend(parse_event(payload));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// What the probe itself saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// TCP: the connection was accepted.
    Connected,
    /// TCP: a reset; UDP: port unreachable. The packet arrived.
    Refused,
    /// UDP: an answer; ICMP: an echo reply.
    Answered,
    /// Nothing came back within the wait.
    NoAnswer,
    /// The source has no route to the destination: nothing was sent.
    NoRoute,
}

fn unroutable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
    )
}

/// How long a probe waits for its answer.
pub const WAIT: Duration = Duration::from_millis(1000);

/// A TCP or UDP socket bound in namespace `ns` (`None`: here), its port
/// chosen by the kernel.
fn bound(
    ns: Option<&crate::model::NsRef>,
    dst: std::net::SocketAddr,
    tcp: bool,
) -> io::Result<(socket2::Socket, u16)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let make = || -> io::Result<(Socket, u16)> {
        let domain = if dst.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let (ty, proto) = if tcp {
            (Type::STREAM, Protocol::TCP)
        } else {
            (Type::DGRAM, Protocol::UDP)
        };
        let s = Socket::new(domain, ty, Some(proto))?;
        let any: std::net::SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .expect("literal");
        s.bind(&any.into())?;
        let port = s.local_addr()?.as_socket().map_or(0, |a| a.port());
        Ok((s, port))
    };
    match ns {
        None => make(),
        Some(ns) => {
            let fd = super::netns::open(ns).map_err(io::Error::other)?;
            super::netns::in_netns(std::os::fd::AsFd::as_fd(&fd), &ns.to_string(), make)
                .map_err(io::Error::other)?
        }
    }
}

/// Sends one packet from `ns` (`None`: the host) to `dst` with the trace
/// rule in place in this thread's namespace, and returns what came back
/// and the trace events of its first packet. `src` is the address the
/// source's route lookup picks; `l4proto` 6, 17, 1 or 58.
pub fn probe(
    ns: Option<&crate::model::NsRef>,
    src: IpAddr,
    dst: std::net::SocketAddr,
    l4proto: u8,
) -> io::Result<(Outcome, Vec<Event>)> {
    let hooks = [Hook::Prerouting, Hook::Output];
    let matcher = |id| Matcher {
        src,
        dst: dst.ip(),
        l4proto,
        id,
    };
    let own = table_name();
    let dropped = |evs: &[Event]| evs.iter().any(|e| e.verdict == "drop" && e.table != own);
    let mut events = Vec::new();
    let end = Instant::now() + WAIT;
    let (outcome, mut tracer) = match l4proto {
        6 | 17 => {
            let tcp = l4proto == 6;
            let (sock, port) = bound(ns, dst, tcp)?;
            let mut tracer = Tracer::start(&matcher(port), &hooks)?;
            let mut answer = start(&sock, dst, tcp)?;
            // Until an answer, a drop the kernel reports, or the wait's end.
            while answer.is_none() {
                tracer.drain(&mut events)?;
                answer = if dropped(&events) || Instant::now() >= end {
                    Some(Outcome::NoAnswer)
                } else {
                    poll(&sock, tcp)?
                };
                if answer.is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            (answer.expect("set above"), tracer)
        }
        _ => {
            let mut tracer = Tracer::start(&matcher(super::ping::echo_id()), &hooks)?;
            let (tx, rx) = std::sync::mpsc::channel();
            let ns = ns.cloned();
            let ip = dst.ip();
            std::thread::spawn(move || {
                let opts = super::ping::Options {
                    count: 1,
                    timeout: WAIT,
                    interval: Duration::from_millis(200),
                    stop: None,
                };
                let here = crate::model::NsRef::Path("/proc/self/ns/net".into());
                let o = match super::ping::ping(ns.as_ref().unwrap_or(&here), ip, &opts, |_| {}) {
                    Ok(s) if s.received > 0 => Ok(Outcome::Answered),
                    Ok(_) => Ok(Outcome::NoAnswer),
                    Err(super::ping::Error::Send { source, .. }) if unroutable(&source) => {
                        Ok(Outcome::NoRoute)
                    }
                    Err(e) => Err(io::Error::other(e)),
                };
                let _ = tx.send(o);
            });
            let outcome = loop {
                match rx.recv_timeout(Duration::from_millis(1)) {
                    Ok(o) => break o?,
                    Err(_) => {
                        tracer.drain(&mut events)?;
                        // The ping thread is left to its wait: nothing
                        // more will come back.
                        if dropped(&events) {
                            break Outcome::NoAnswer;
                        }
                    }
                }
            };
            (outcome, tracer)
        }
    };
    // The last events of the first packet may still be on their way.
    let settle = Instant::now() + Duration::from_millis(20);
    while Instant::now() < settle {
        tracer.drain(&mut events)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((outcome, first_packet(events)))
}

/// The events of the probe's first packet: those with its id, up to where
/// the next packet (an ACK, a retransmit) starts again at the first chain.
fn first_packet(events: Vec<Event>) -> Vec<Event> {
    let Some(first) = events.first().cloned() else {
        return events;
    };
    let mut out: Vec<Event> = Vec::new();
    for e in events.into_iter().filter(|e| e.id == first.id) {
        let again = !out.is_empty()
            && e.table == first.table
            && e.chain == first.chain
            && out.last().is_some_and(|l| l.chain != e.chain);
        if again {
            break;
        }
        out.push(e);
    }
    out
}

fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::ECONNRESET)
    )
}

/// Starts a connection (TCP) or sends a datagram (UDP); an outcome when
/// it is known at once.
fn start(
    sock: &socket2::Socket,
    dst: std::net::SocketAddr,
    tcp: bool,
) -> io::Result<Option<Outcome>> {
    sock.set_nonblocking(true)?;
    match sock.connect(&dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if refused(&e) => return Ok(Some(Outcome::Refused)),
        Err(e) if unroutable(&e) => return Ok(Some(Outcome::NoRoute)),
        Err(e) => return Err(e),
    }
    if !tcp {
        match sock.send(b"nsnet trace probe") {
            Ok(_) => {}
            Err(e) if unroutable(&e) => return Ok(Some(Outcome::NoRoute)),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The answer so far, if any.
fn poll(sock: &socket2::Socket, tcp: bool) -> io::Result<Option<Outcome>> {
    if tcp {
        return match sock.take_error()? {
            Some(e) if refused(&e) => Ok(Some(Outcome::Refused)),
            Some(e) if unroutable(&e) => Ok(Some(Outcome::NoRoute)),
            Some(e) => Err(e),
            None => Ok(sock.peer_addr().is_ok().then_some(Outcome::Connected)),
        };
    }
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    match sock.recv(&mut buf) {
        Ok(_) => Ok(Some(Outcome::Answered)),
        Err(e) if refused(&e) => Ok(Some(Outcome::Refused)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::nfnetlink::attrs;

    #[test]
    fn the_batch_makes_an_owned_table_a_chain_and_a_rule_per_hook() {
        let m = Matcher {
            src: "10.0.0.2".parse().unwrap(),
            dst: "10.0.1.2".parse().unwrap(),
            l4proto: 6,
            id: 40000,
        };
        let batch = setup_batch(&m, &[Hook::Prerouting, Hook::Output], 1);
        let parsed = messages(&batch);
        let kinds: Vec<u16> = parsed.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [16, 0xa00, 0xa03, 0xa06, 0xa03, 0xa06, 17]);
        let table = &parsed[1].1[4..];
        let flags = find(table, 2).unwrap().0;
        assert_eq!(flags, &2u32.to_be_bytes(), "NFT_TABLE_F_OWNER");
        let rule = &parsed[3].1[4..];
        let exprs = find(rule, 4).unwrap().0;
        let names: Vec<String> = attrs(exprs)
            .iter()
            .map(|(_, e, _)| String::from_utf8_lossy(find(e, 1).unwrap().0).to_string())
            .collect();
        assert_eq!(names.len(), 10, "{names:?}");
        assert!(names.last().unwrap().starts_with("meta"));
    }

    #[test]
    fn trace_events_parse() {
        let body = [
            attr(1, b"filter\0"),
            attr(2, b"FORWARD\0"),
            attr(4, &3u32.to_be_bytes()),
            attr(3, &7u64.to_be_bytes()),
            nested(5, &[attr(1, &0i32.to_be_bytes())]),
            attr(6, &99u32.to_be_bytes()),
        ]
        .concat();
        let payload = [vec![2, 0, 0, 0], body].concat();
        let e = parse_event(&payload).unwrap();
        assert_eq!(
            (
                e.family.as_str(),
                e.table.as_str(),
                e.chain.as_str(),
                e.kind
            ),
            ("ip", "filter", "FORWARD", "rule")
        );
        assert_eq!((e.handle, e.verdict.as_str(), e.id), (Some(7), "drop", 99));
    }
}

//! Synchronous rtnetlink: one blocking socket per network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that created it
//! (see `netns::in_netns`), so a `Handle` opened inside a namespace keeps
//! talking to that namespace from any thread afterwards. This layer knows
//! links, addresses and routes; it knows nothing of nsnet's networks.

mod addr;
mod lan;
mod link;
mod qdisc;
mod route;
mod tunnel;

pub use addr::AddressInfo;
pub use lan::MacvlanSpec;
pub use link::{LinkInfo, LinkKind, PortOption, VethSpec};
pub use qdisc::{netem_options, parse_netem_options};
pub use route::{RouteInfo, RouteLookup};
pub use tunnel::VxlanSpec;

use std::io;
use std::num::NonZeroI32;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Receive buffer size. Dumps of many links come in multi-message datagrams
/// of up to a page each, but the kernel may use up to 32 KiB when the
/// receiver's buffer allows it.
const RECV_BUF: usize = 64 * 1024;
/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute carrying the kernel's
/// human-readable reason, as iproute2 prints after "Error:".
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Messages per datagram in `Handle::batch` (about 40 KB of requests).
/// Only the last one is acknowledged; should many be refused, their
/// replies overflowing the socket's buffer end the batch with ENOBUFS, not
/// a wait for replies that were dropped.
const BATCH: usize = 512;
/// The message type of a link in a reply.
const RTM_NEWLINK: u16 = 16;

/// Where `receive_range_raw` hands link payloads.
type RawLinks<'a> = &'a mut dyn FnMut(&[u8]);

/// A failed netlink operation: what was attempted, on what, and the kernel's
/// answer (errno plus the extended-ack text when the kernel gave one).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel's answer is the leaf of the chain: printed inline, not a
    /// `source`.
    #[error("{op} {target}: {answer}{}", ext_ack.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        op: &'static str,
        target: String,
        answer: io::Error,
        ext_ack: Option<String>,
    },
    #[error("opening a netlink socket")]
    Open(#[source] io::Error),
    #[error("{op} {target}: netlink I/O")]
    Io {
        op: &'static str,
        target: String,
        source: io::Error,
    },
    #[error("{op} {target}: malformed netlink reply: {reason}")]
    Decode {
        op: &'static str,
        target: String,
        reason: String,
    },
}

impl Error {
    /// The errno the kernel answered with, if this is a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { answer, .. } => answer.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a request is about, for error messages: `("creating link", "br0")`.
pub(crate) struct Ctx<'a> {
    pub op: &'static str,
    pub target: &'a str,
}

/// A blocking rtnetlink socket bound to one network namespace.
pub struct Handle {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Handle {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(Error::Open)?;
        socket.bind_auto().map_err(Error::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(Error::Open)?;
        // Strict checking makes the kernel honour dump filters (ifindex in
        // address dumps); extended acks give us the kernel's reason text,
        // capped acks keep error replies small.
        socket
            .set_netlink_get_strict_chk(true)
            .map_err(Error::Open)?;
        socket.set_ext_ack(true).map_err(Error::Open)?;
        socket.set_cap_ack(true).map_err(Error::Open)?;
        Ok(Handle {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, ctx: &Ctx) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(|source| Error::Io {
            op: ctx.op,
            target: ctx.target.to_string(),
            source,
        })?;
        Ok(self.seq)
    }

    /// Sends a request that changes something and waits for the kernel's ACK.
    pub(crate) fn request(&mut self, msg: RouteNetlinkMessage, flags: u16, ctx: Ctx) -> Result<()> {
        let seq = self.send(msg, flags | NLM_F_ACK, &ctx)?;
        let mut done = false;
        self.receive(seq, &ctx, |reply| {
            if let Reply::Ack = reply {
                done = true;
            }
            Ok(!done)
        })
    }

    /// Sends many changes at once, up to `BATCH` messages per datagram.
    /// Only the last of each datagram asks for an acknowledgement (the
    /// kernel reports refusals whether asked or not), so the replies stay
    /// few: one exchange per datagram instead of one per message. All
    /// messages are tried; the first refusal is returned.
    pub(crate) fn batch(
        &mut self,
        msgs: Vec<RouteNetlinkMessage>,
        flags: u16,
        op: &'static str,
    ) -> Result<()> {
        let ctx = Ctx { op, target: "" };
        let mut first_error = None;
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let chunk: Vec<RouteNetlinkMessage> = msgs.by_ref().take(BATCH).collect();
            let mut bytes = Vec::new();
            let first_seq = self.seq.wrapping_add(1);
            let count = chunk.len();
            for (k, msg) in chunk.into_iter().enumerate() {
                self.seq = self.seq.wrapping_add(1);
                let mut header = NetlinkHeader::default();
                header.flags = NLM_F_REQUEST | flags;
                if k + 1 == count {
                    header.flags |= NLM_F_ACK;
                }
                header.sequence_number = self.seq;
                let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
                packet.finalize();
                let start = bytes.len();
                bytes.resize(start + packet.buffer_len(), 0);
                packet.serialize(&mut bytes[start..]);
            }
            let last_seq = self.seq;
            self.socket.send(&bytes, 0).map_err(|source| Error::Io {
                op,
                target: String::new(),
                source,
            })?;
            self.receive_range(first_seq..=last_seq, &ctx, |seq, reply| {
                let done = seq == last_seq;
                if let Reply::Refused(e) = reply {
                    first_error.get_or_insert(e);
                }
                Ok(!done)
            })?;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends a request that the kernel answers with one message.
    pub(crate) fn single(
        &mut self,
        msg: RouteNetlinkMessage,
        ctx: &Ctx,
    ) -> Result<Option<RouteNetlinkMessage>> {
        let seq = self.send(msg, 0, ctx)?;
        let mut out = None;
        self.receive(seq, ctx, |reply| {
            if let Reply::Message(m) = reply {
                out = Some(m);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// Sends a dump request and collects every reply message.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        ctx: Ctx,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.dump_map(msg, ctx, Some)
    }

    /// A dump whose replies are turned into what the caller keeps as they
    /// arrive: a parsed link message is many times the size of what nsnet
    /// reads from it, and a dump may hold thousands.
    pub(crate) fn dump_map<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        ctx: Ctx,
        mut keep: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>> {
        let seq = self.send(msg, NLM_F_DUMP, &ctx)?;
        let mut out = Vec::new();
        self.receive(seq, &ctx, |reply| match reply {
            Reply::Message(m) => {
                out.extend(keep(m));
                Ok(true)
            }
            Reply::Done | Reply::Ack => Ok(false),
            // `receive` turns refusals into errors before they get here.
            Reply::Refused(e) => Err(e),
        })?;
        Ok(out)
    }

    /// A link dump read without netlink-packet-route's parser: a bridge
    /// port's message carries dozens of attributes nsnet never reads, and
    /// a dump of a thousand ports spent most of its time parsing them.
    pub(crate) fn dump_links(
        &mut self,
        msg: RouteNetlinkMessage,
        ctx: Ctx,
    ) -> Result<Vec<link::LinkInfo>> {
        let seq = self.send(msg, NLM_F_DUMP, &ctx)?;
        let mut out = Vec::new();
        let mut keep = |payload: &[u8]| out.extend(link::parse_link(payload));
        self.receive_range_raw(seq..=seq, &ctx, Some(&mut keep), |_, reply| match reply {
            Reply::Done | Reply::Ack => Ok(false),
            Reply::Message(_) => Ok(true),
            Reply::Refused(e) => Err(e),
        })?;
        Ok(out)
    }

    /// A link dump whose payloads go to `keep` unparsed.
    pub(crate) fn dump_raw_links(
        &mut self,
        msg: RouteNetlinkMessage,
        ctx: Ctx,
        keep: RawLinks<'_>,
    ) -> Result<()> {
        let seq = self.send(msg, NLM_F_DUMP, &ctx)?;
        self.receive_range_raw(seq..=seq, &ctx, Some(keep), |_, reply| match reply {
            Reply::Done | Reply::Ack => Ok(false),
            Reply::Message(_) => Ok(true),
            Reply::Refused(e) => Err(e),
        })
    }

    /// Reads datagrams until `on_reply` says stop. Several netlink messages
    /// may share one datagram; each carries its own length.
    fn receive(
        &mut self,
        seq: u32,
        ctx: &Ctx,
        mut on_reply: impl FnMut(Reply) -> Result<bool>,
    ) -> Result<()> {
        self.receive_range(seq..=seq, ctx, |_, reply| match reply {
            Reply::Refused(e) => Err(e),
            other => on_reply(other),
        })
    }

    /// Like `receive`, for replies to any request of `seqs`; a refusal is
    /// passed on as `Reply::Refused` with its sequence number.
    fn receive_range(
        &mut self,
        seqs: std::ops::RangeInclusive<u32>,
        ctx: &Ctx,
        on_reply: impl FnMut(u32, Reply) -> Result<bool>,
    ) -> Result<()> {
        self.receive_range_raw(seqs, ctx, None, on_reply)
    }

    /// `receive_range`, handing the payloads of RTM_NEWLINK replies to
    /// `raw` unparsed, when given (see `dump_links`).
    fn receive_range_raw(
        &mut self,
        seqs: std::ops::RangeInclusive<u32>,
        ctx: &Ctx,
        mut raw: Option<RawLinks<'_>>,
        mut on_reply: impl FnMut(u32, Reply) -> Result<bool>,
    ) -> Result<()> {
        loop {
            self.buf.clear();
            let n = self
                .socket
                .recv(&mut self.buf, 0)
                .map_err(|source| Error::Io {
                    op: ctx.op,
                    target: ctx.target.to_string(),
                    source,
                })?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                if let (Some(raw), Some(header)) = (raw.as_mut(), bytes.get(..16)) {
                    let word = |i: usize| u32::from_ne_bytes(header[i..i + 4].try_into().unwrap());
                    let (len, kind) =
                        (word(0) as usize, u16::from_ne_bytes([header[4], header[5]]));
                    if kind == RTM_NEWLINK && len >= 16 && len <= bytes.len() {
                        if seqs.contains(&word(8)) {
                            raw(&bytes[16..len]);
                        }
                        offset += (len + 3) & !3;
                        continue;
                    }
                }
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                        Error::Decode {
                            op: ctx.op,
                            target: ctx.target.to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(Error::Decode {
                        op: ctx.op,
                        target: ctx.target.to_string(),
                        reason: "zero-length message".into(),
                    });
                }
                offset += (len + 3) & !3;
                let seq = msg.header.sequence_number;
                if !seqs.contains(&seq) {
                    // A late reply to an earlier request: not ours to read.
                    continue;
                }
                let reply = match msg.payload {
                    // A dump that the kernel refused to start ends with
                    // its errno in the DONE message, not in an error one.
                    NetlinkPayload::Done(d) if d.code < 0 => {
                        return Err(Error::Kernel {
                            op: ctx.op,
                            target: ctx.target.to_string(),
                            answer: io::Error::from_raw_os_error(-d.code),
                            ext_ack: ext_ack_message(&d.extended_ack),
                        })
                    }
                    NetlinkPayload::Done(_) => Reply::Done,
                    NetlinkPayload::Error(err) => match err.code {
                        None => Reply::Ack,
                        Some(code) => Reply::Refused(kernel_error(code, &err.header, ctx)),
                    },
                    NetlinkPayload::InnerMessage(m) => Reply::Message(m),
                    _ => continue,
                };
                if !on_reply(seq, reply)? {
                    return Ok(());
                }
            }
        }
    }
}

enum Reply {
    Message(RouteNetlinkMessage),
    Ack,
    Done,
    Refused(Error),
}

/// Builds the error for a NACK. With `NETLINK_CAP_ACK` the echoed request is
/// only its 16-byte header; the extended-ack attributes follow it.
fn kernel_error(code: NonZeroI32, echoed: &[u8], ctx: &Ctx) -> Error {
    Error::Kernel {
        op: ctx.op,
        target: ctx.target.to_string(),
        answer: io::Error::from_raw_os_error(-code.get()),
        ext_ack: echoed.get(16..).and_then(ext_ack_message),
    }
}

/// The (type, value) pairs of a run of netlink attributes, read in place
/// (a dump of a thousand ports walks a thousand runs).
pub(crate) fn attributes(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = b;
    std::iter::from_fn(move || {
        let b = rest;
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let kind = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        rest = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, &b[4..len]))
    })
}

/// Finds `NLMSGERR_ATTR_MSG` among netlink attributes (4-byte aligned TLVs).
fn ext_ack_message(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &attrs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        let step = (len + 3) & !3;
        attrs = attrs.get(step..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_text_is_found_after_other_attributes() {
        let mut attrs = Vec::new();
        // NLMSGERR_ATTR_OFFS (2), u32
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&2u16.to_ne_bytes());
        attrs.extend_from_slice(&40u32.to_ne_bytes());
        let msg = b"Unknown device type\0";
        attrs.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
        attrs.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        attrs.extend_from_slice(msg);
        assert_eq!(
            ext_ack_message(&attrs).as_deref(),
            Some("Unknown device type")
        );
    }

    #[test]
    fn truncated_attributes_give_no_text() {
        assert_eq!(ext_ack_message(&[200, 0, 1, 0, b'x']), None);
        assert_eq!(ext_ack_message(&[]), None);
    }
}

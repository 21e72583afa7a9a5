//! Raw nfnetlink (`NETLINK_NETFILTER`) messages: the little that nsnet
//! needs for conntrack and for counting its own nf_tables rules, without a
//! dependency that models all of netfilter.

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
pub const NFGENMSG_LEN: usize = 4;

pub fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Netlink attributes as (type without flags, payload, whole attribute).
pub fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len], &buf[..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    out
}

/// The first attribute of a type: (payload, whole attribute).
pub fn find(buf: &[u8], kind: u16) -> Option<(&[u8], &[u8])> {
    attrs(buf)
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, payload, whole)| (payload, whole))
}

/// One attribute, padded.
pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(align(4 + payload.len()));
    v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(payload);
    v.resize(align(v.len()), 0);
    v
}

/// A request of subsystem `subsys`: nlmsghdr, nfgenmsg, attributes.
pub fn message(subsys: u16, kind: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    batch_message((subsys << 8) | kind, flags, seq, family, 0, attrs)
}

/// A message with its whole netlink type and nfgenmsg's resource id: a
/// batch's begin and end name the subsystem there (nf_tables batches).
pub fn batch_message(
    nl_type: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&nl_type.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id (big endian).
    m.extend_from_slice(&[family, 0]);
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// Splits a datagram into (type, payload after the nlmsghdr) pairs.
pub fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        out.push((kind, &buf[off + NLMSG_HDRLEN..off + len]));
        off += align(len);
    }
    out
}

/// The errno of an NLMSG_ERROR payload (0 for an ACK).
pub fn error_code(payload: &[u8]) -> i32 {
    -i32::from_ne_bytes(
        payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 4]),
    )
}

pub struct NfSocket {
    socket: Socket,
    buf: Vec<u8>,
}

impl NfSocket {
    pub fn open() -> io::Result<NfSocket> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(NfSocket {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        self.socket.send(msg, 0).map(|_| ())
    }

    /// Runs a dump, handing each reply's payload (after nfgenmsg) to `f`.
    pub fn dump(&mut self, msg: &[u8], mut f: impl FnMut(&[u8])) -> io::Result<()> {
        self.send(msg)?;
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            for (kind, payload) in messages(&self.buf[..n]) {
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = error_code(payload);
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(code))
                        };
                    }
                    _ => f(payload.get(NFGENMSG_LEN..).unwrap_or_default()),
                }
            }
        }
    }

    /// Sends a request with NLM_F_ACK and returns the kernel's errno (0: ok).
    pub fn request(&mut self, msg: &[u8]) -> io::Result<i32> {
        self.send(msg)?;
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            for (kind, payload) in messages(&self.buf[..n]) {
                if kind == NLMSG_ERROR {
                    return Ok(error_code(payload));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_round_trip() {
        let a = message(1, 1, 0, 1, 2, &[]);
        let b = message(1, 2, 0, 2, 2, &attr(1, &[9]));
        let both = [a, b].concat();
        let parsed = messages(&both);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0, 0x0102);
        let body = &parsed[1].1[NFGENMSG_LEN..];
        assert_eq!(find(body, 1).unwrap().0, &[9]);
        let nested = attr(
            2 | 0x8000,
            &[attr(3, b"x\0"), attr(4, &[1, 2, 3, 4])].concat(),
        );
        let (inner, _) = find(&nested, 2).unwrap();
        assert_eq!(find(inner, 4).unwrap().0, &[1, 2, 3, 4]);
    }
}

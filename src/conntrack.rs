//! Connection tracking over ctnetlink (`NETLINK_NETFILTER`): forgetting the
//! flows of an attachment that went away.
//!
//! Why: a UDP "connection" to a published port lives on in conntrack after
//! its target is gone (30-120 s). A client that keeps sending from the same
//! source port would keep being translated to the old, dead address even
//! after another attachment took the port over. netavark flushes for the
//! same reason (netavark#1045).

use std::io;
use std::net::IpAddr;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening a conntrack netlink socket: {0}")]
    Open(#[source] io::Error),
    #[error("listing conntrack entries: {0}")]
    Dump(#[source] io::Error),
    #[error("deleting a conntrack entry: {0}")]
    Delete(#[source] io::Error),
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Netlink attributes as (type without flags, payload, whole attribute).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
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

fn find(buf: &[u8], kind: u16) -> Option<(&[u8], &[u8])> {
    attrs(buf)
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, payload, whole)| (payload, whole))
}

/// The source address of a tuple attribute's payload.
fn tuple_source(tuple: &[u8]) -> Option<IpAddr> {
    let (ip, _) = find(tuple, CTA_TUPLE_IP)?;
    if let Some((v4, _)) = find(ip, CTA_IP_V4_SRC) {
        let b: [u8; 4] = v4.try_into().ok()?;
        return Some(IpAddr::from(b));
    }
    let (v6, _) = find(ip, CTA_IP_V6_SRC)?;
    let b: [u8; 16] = v6.try_into().ok()?;
    Some(IpAddr::from(b))
}

fn message(kind: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id 0.
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// Splits a datagram into (type, flags-less payload after nlmsghdr) pairs.
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
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

/// Deletes every entry whose reply comes from one of `addrs` (flows that
/// were handled by those addresses). Returns how many were deleted.
pub fn forget_flows_to(addrs: &[IpAddr]) -> Result<usize, Error> {
    if addrs.is_empty() {
        return Ok(0);
    }
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(Error::Open)?;
    socket.bind_auto().map_err(Error::Open)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(Error::Open)?;
    let mut doomed: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        if !addrs
            .iter()
            .any(|a| a.is_ipv4() == (family == libc::AF_INET as u8))
        {
            continue;
        }
        socket
            .send(&message(IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq, family, &[]), 0)
            .map_err(Error::Dump)?;
        'dump: loop {
            buf.clear();
            let n = socket.recv(&mut buf, 0).map_err(Error::Dump)?;
            for (kind, payload) in messages(&buf[..n]) {
                match kind {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            payload
                                .get(..4)
                                .and_then(|b| b.try_into().ok())
                                .unwrap_or([0; 4]),
                        );
                        if code != 0 {
                            return Err(Error::Dump(io::Error::from_raw_os_error(-code)));
                        }
                        break 'dump;
                    }
                    _ => {}
                }
                let Some(body) = payload.get(NFGENMSG_LEN..) else {
                    continue;
                };
                let reply_from = find(body, CTA_TUPLE_REPLY).and_then(|(t, _)| tuple_source(t));
                if reply_from.is_some_and(|a| addrs.contains(&a)) {
                    // The original tuple, as the kernel sent it, identifies
                    // the entry; the zone too when there is one.
                    let mut key = Vec::new();
                    if let Some((_, whole)) = find(body, CTA_TUPLE_ORIG) {
                        key.extend_from_slice(whole);
                        key.resize(align(key.len()), 0);
                    }
                    if let Some((_, whole)) = find(body, CTA_ZONE) {
                        key.extend_from_slice(whole);
                        key.resize(align(key.len()), 0);
                    }
                    doomed.push((family, key));
                }
            }
        }
    }
    let mut deleted = 0;
    for (i, (family, key)) in doomed.iter().enumerate() {
        let seq = 100 + i as u32;
        socket
            .send(
                &message(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, seq, *family, key),
                0,
            )
            .map_err(Error::Delete)?;
        buf.clear();
        let n = socket.recv(&mut buf, 0).map_err(Error::Delete)?;
        for (kind, payload) in messages(&buf[..n]) {
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(
                    payload
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 4]),
                );
                match -code {
                    0 => deleted += 1,
                    // Gone by itself meanwhile.
                    libc::ENOENT => {}
                    e => return Err(Error::Delete(io::Error::from_raw_os_error(e))),
                }
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(align(v.len()), 0);
        v
    }

    #[test]
    fn reply_source_is_found_in_nested_attributes() {
        let ip = nla(
            CTA_TUPLE_IP | 0x8000,
            &[nla(CTA_IP_V4_SRC, &[10, 0, 0, 2]), nla(2, &[1, 2, 3, 4])].concat(),
        );
        let tuple = nla(CTA_TUPLE_REPLY | 0x8000, &ip);
        let body = [nla(CTA_TUPLE_ORIG | 0x8000, &ip), tuple].concat();
        let (t, _) = find(&body, CTA_TUPLE_REPLY).unwrap();
        assert_eq!(tuple_source(t), Some("10.0.0.2".parse().unwrap()));
        let v6 = nla(
            CTA_TUPLE_IP,
            &nla(
                CTA_IP_V6_SRC,
                &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ),
        );
        assert_eq!(tuple_source(&v6), Some("fd00::2".parse().unwrap()));
        assert_eq!(tuple_source(&[1, 2]), None);
    }

    #[test]
    fn messages_are_split_by_length() {
        let a = message(IPCTNL_MSG_CT_GET, 0, 1, 2, &[]);
        let b = message(IPCTNL_MSG_CT_DELETE, 0, 2, 2, &nla(1, &[9]));
        let both = [a, b].concat();
        let parsed = messages(&both);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0, 0x0102);
    }
}

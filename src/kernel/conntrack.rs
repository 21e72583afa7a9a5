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

use crate::kernel::nfnetlink::{align, find, message, NfSocket, NLM_F_ACK, NLM_F_DUMP};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening a conntrack netlink socket")]
    Open(#[source] io::Error),
    #[error("listing conntrack entries")]
    Dump(#[source] io::Error),
    #[error("deleting a conntrack entry")]
    Delete(#[source] io::Error),
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

/// Deletes every entry whose reply comes from one of `addrs` (flows that
/// were handled by those addresses). Returns how many were deleted.
pub fn forget_flows_to(addrs: &[IpAddr]) -> Result<usize, Error> {
    if addrs.is_empty() {
        return Ok(0);
    }
    let mut socket = NfSocket::open().map_err(Error::Open)?;
    let mut doomed: Vec<(u8, Vec<u8>)> = Vec::new();
    for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        if !addrs
            .iter()
            .any(|a| a.is_ipv4() == (family == libc::AF_INET as u8))
        {
            continue;
        }
        let req = message(
            NFNL_SUBSYS_CTNETLINK,
            IPCTNL_MSG_CT_GET,
            NLM_F_DUMP,
            seq,
            family,
            &[],
        );
        socket
            .dump(&req, |body| {
                let reply_from = find(body, CTA_TUPLE_REPLY).and_then(|(t, _)| tuple_source(t));
                if reply_from.is_some_and(|a| addrs.contains(&a)) {
                    // The original tuple, as the kernel sent it, identifies
                    // the entry; the zone too when there is one.
                    let mut key = Vec::new();
                    for kind in [CTA_TUPLE_ORIG, CTA_ZONE] {
                        if let Some((_, whole)) = find(body, kind) {
                            key.extend_from_slice(whole);
                            key.resize(align(key.len()), 0);
                        }
                    }
                    doomed.push((family, key));
                }
            })
            .map_err(Error::Dump)?;
    }
    let mut deleted = 0;
    for (i, (family, key)) in doomed.iter().enumerate() {
        let req = message(
            NFNL_SUBSYS_CTNETLINK,
            IPCTNL_MSG_CT_DELETE,
            NLM_F_ACK,
            100 + i as u32,
            *family,
            key,
        );
        match socket.request(&req).map_err(Error::Delete)? {
            0 => deleted += 1,
            // Gone by itself meanwhile.
            libc::ENOENT => {}
            e => return Err(Error::Delete(io::Error::from_raw_os_error(e))),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::nfnetlink::attr;

    #[test]
    fn reply_source_is_found_in_nested_attributes() {
        let ip = attr(
            CTA_TUPLE_IP | 0x8000,
            &[attr(CTA_IP_V4_SRC, &[10, 0, 0, 2]), attr(2, &[1, 2, 3, 4])].concat(),
        );
        let tuple = attr(CTA_TUPLE_REPLY | 0x8000, &ip);
        let body = [attr(CTA_TUPLE_ORIG | 0x8000, &ip), tuple].concat();
        let (t, _) = find(&body, CTA_TUPLE_REPLY).unwrap();
        assert_eq!(tuple_source(t), Some("10.0.0.2".parse().unwrap()));
        let v6 = attr(
            CTA_TUPLE_IP,
            &attr(
                CTA_IP_V6_SRC,
                &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ),
        );
        assert_eq!(tuple_source(&v6), Some("fd00::2".parse().unwrap()));
        assert_eq!(tuple_source(&[1, 2]), None);
    }
}

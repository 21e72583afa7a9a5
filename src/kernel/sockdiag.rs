//! Which sockets of this namespace listen on a port: the kernel's socket
//! diagnostics (`NETLINK_SOCK_DIAG`, `inet_diag`) for TCP, UDP and SCTP,
//! and, for naming the holder, the `/proc/PID/fd` links to the socket's
//! inode.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::nfnetlink::{error_code, messages, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST};
use crate::model::ports::{HostListener, Protocol};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;
/// `struct inet_diag_msg`: family, state, timer, retrans, then the socket
/// id (sport, dport, src[16], dst[16], if, cookie[8]), expires, rqueue,
/// wqueue, uid, inode.
const MSG_LEN: usize = 72;

fn ip_protocol(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => libc::IPPROTO_TCP as u8,
        Protocol::Udp => libc::IPPROTO_UDP as u8,
        Protocol::Sctp => libc::IPPROTO_SCTP as u8,
    }
}

/// `struct inet_diag_req_v2` for every socket of a family and protocol in
/// the given states.
fn request(family: u8, protocol: u8, states: u32) -> Vec<u8> {
    let mut body = vec![family, protocol, 0, 0];
    body.extend_from_slice(&states.to_ne_bytes());
    body.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: any
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&body);
    m
}

/// (address, port, inode) of one `inet_diag_msg`.
fn parse(msg: &[u8]) -> Option<(IpAddr, u16, u32)> {
    if msg.len() < MSG_LEN {
        return None;
    }
    let port = u16::from_be_bytes([msg[4], msg[5]]);
    let src: [u8; 16] = msg[8..24].try_into().ok()?;
    let addr = if i32::from(msg[0]) == libc::AF_INET {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(src))
    };
    let inode = u32::from_ne_bytes(msg[68..72].try_into().ok()?);
    Some((addr, port, inode))
}

/// The sockets of this namespace that listen for `protocol` (for UDP: that
/// are bound and not connected), both families.
pub fn listeners(protocol: Protocol) -> io::Result<Vec<HostListener>> {
    let states = match protocol {
        Protocol::Udp => 1 << TCP_CLOSE,
        // SCTP listening sockets report LISTEN; ESTABLISHED are associations.
        Protocol::Tcp | Protocol::Sctp => 1 << TCP_LISTEN,
    };
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut found = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        socket.send(&request(family, ip_protocol(protocol), states), 0)?;
        let mut buf = Vec::with_capacity(64 * 1024);
        'dump: loop {
            buf.clear();
            let n = socket.recv(&mut buf, 0)?;
            for (kind, payload) in messages(&buf[..n]) {
                match kind {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => match error_code(payload) {
                        0 => break 'dump,
                        // No SCTP (module not loaded): no SCTP listener.
                        libc::ENOENT | libc::EINVAL | libc::EPROTONOSUPPORT
                            if protocol == Protocol::Sctp =>
                        {
                            break 'dump
                        }
                        code => return Err(io::Error::from_raw_os_error(code)),
                    },
                    _ => found.extend(parse(payload)),
                }
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(addr, port, inode)| HostListener {
            protocol,
            addr,
            port,
            inode,
            process: None,
        })
        .collect())
}

/// `name[pid]` of a process holding the socket `inode`, found through the
/// `/proc/PID/fd` links (`socket:[INODE]`); unreadable processes are
/// skipped. It reads every process's fds: only for a socket in the way.
pub fn holder(inode: u32) -> Option<String> {
    let procs = std::fs::read_dir("/proc").ok()?;
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let wanted = format!("socket:[{inode}]");
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == wanted.as_str())
        });
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            return Some(format!("{}[{pid}]", comm.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diag_message_gives_address_port_and_inode() {
        let mut m = vec![0u8; MSG_LEN];
        m[0] = libc::AF_INET as u8;
        m[4..6].copy_from_slice(&8080u16.to_be_bytes());
        m[8..12].copy_from_slice(&[127, 0, 0, 1]);
        m[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        assert_eq!(parse(&m), Some(("127.0.0.1".parse().unwrap(), 8080, 4242)));
        assert_eq!(parse(&m[..10]), None);
        let r = request(libc::AF_INET6 as u8, 6, 1 << TCP_LISTEN);
        assert_eq!(r.len(), 16 + 56);
    }
}

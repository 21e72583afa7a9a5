//! Packet capture on one interface: an AF_PACKET socket opened in the
//! interface's namespace and bound to it (every protocol, both
//! directions), with a classic BPF filter attached in the kernel when one
//! is asked for, and the libpcap file format to write what it reads
//! (readable by tcpdump and Wireshark). The filter language is libpcap's:
//! its compiler is libpcap's own, through `tcpdump -ddd` (a static
//! nsnet cannot link libpcap, and no pure-Rust compiler of that language
//! is mature enough to trust).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};

use super::netns;
use super::packet::{self, PACKET_OUTGOING};
use crate::model::NsRef;

/// What a packet socket keeps of each packet (tcpdump's default).
pub const SNAPLEN: u32 = 262_144;
/// The pcap link type of Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// How often a capture waiting for packets looks at its stop flag.
const WAKE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error("{ifname}: no such interface in {place}")]
    NoInterface { place: String, ifname: String },
    #[error("opening a packet socket on {ifname} in {place}")]
    Socket {
        place: String,
        ifname: String,
        source: io::Error,
    },
    #[error("capture filter {expr:?}: {reason}")]
    Filter { expr: String, reason: String },
    #[error("compiling capture filter {expr:?} needs tcpdump (Debian package tcpdump), whose libpcap compiles it")]
    NoCompiler { expr: String, source: io::Error },
    #[error("receiving packets on {ifname}")]
    Receive { ifname: String, source: io::Error },
    #[error("writing a captured packet")]
    Write(#[source] io::Error),
}

/// One instruction of a classic BPF program (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A program as `tcpdump -ddd` prints it: the count, then one instruction
/// per line in decimal (no I/O).
pub fn parse_program(text: &str) -> Option<Vec<Insn>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let count: usize = lines.next()?.trim().parse().ok()?;
    let insns: Option<Vec<Insn>> = lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [c, t, e, k] => Some(Insn {
                    code: c.parse().ok()?,
                    jt: t.parse().ok()?,
                    jf: e.parse().ok()?,
                    k: k.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect();
    insns.filter(|i| i.len() == count && count > 0)
}

/// Compiles a filter for Ethernet frames with libpcap (through tcpdump,
/// reading an empty capture file so that no interface is needed).
pub fn compile_filter(expr: &str) -> Result<Vec<Insn>, Error> {
    let dir = std::env::temp_dir().join(format!("nsnet-filter-{}", std::process::id()));
    let empty = dir.with_extension("pcap");
    std::fs::write(&empty, file_header(SNAPLEN, LINKTYPE_ETHERNET)).map_err(|source| {
        Error::NoCompiler {
            expr: expr.to_string(),
            source,
        }
    })?;
    let out = Command::new("tcpdump")
        .arg("-r")
        .arg(&empty)
        .args(["-ddd", "--", expr])
        .output();
    let _ = std::fs::remove_file(&empty);
    let out = out.map_err(|source| Error::NoCompiler {
        expr: expr.to_string(),
        source,
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let reason = stderr
            .lines()
            .filter(|l| !l.starts_with("reading from file"))
            .map(|l| l.trim_start_matches("tcpdump: "))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Filter {
            expr: expr.to_string(),
            reason,
        });
    }
    parse_program(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| Error::Filter {
        expr: expr.to_string(),
        reason: "the compiler's output is not a BPF program".into(),
    })
}

/// The libpcap file header: nanosecond timestamps, version 2.4.
pub fn file_header(snaplen: u32, linktype: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&snaplen.to_le_bytes());
    h.extend_from_slice(&linktype.to_le_bytes());
    h
}

/// One packet record of a libpcap file.
pub fn record(p: &Packet) -> Vec<u8> {
    let t = p.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut r = Vec::with_capacity(16 + p.data.len());
    r.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
    r.extend_from_slice(&t.subsec_nanos().to_le_bytes());
    r.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
    r.extend_from_slice(&(p.wire_len as u32).to_le_bytes());
    r.extend_from_slice(p.data);
    r
}

/// A packet as read.
#[derive(Debug)]
pub struct Packet<'a> {
    pub time: SystemTime,
    /// Sent by the interface (else received).
    pub outgoing: bool,
    /// Its length on the wire; `data` is at most `SNAPLEN` of it.
    pub wire_len: usize,
    pub data: &'a [u8],
}

/// When a capture stops.
#[derive(Debug, Default)]
pub struct Options {
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Set (by a signal handler) to stop.
    pub stop: Option<&'static AtomicBool>,
}

/// An open capture: from the moment `open` returns, every packet on the
/// interface that passes the filter is queued for `run` (tcpdump says
/// "listening on" at this point).
#[derive(Debug)]
pub struct Capture {
    socket: Socket,
    ifname: String,
}

/// A packet socket on `ifname` in `ns` (the host's namespace when `None`),
/// with the filter attached before it is bound, so that nothing the
/// filter rejects is ever queued.
fn open(ns: Option<&NsRef>, ifname: &str, filter: Option<&[Insn]>) -> Result<Socket, Error> {
    let place = ns.map_or("the host".to_string(), |n| format!("namespace {n}"));
    let fail = |source| Error::Socket {
        place: place.clone(),
        ifname: ifname.to_string(),
        source,
    };
    // Protocol 0: nothing arrives until the bind (see `packet::bind`).
    let make = || -> io::Result<(Socket, u32)> {
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let none = Protocol::from(0);
        Ok((Socket::new(Domain::PACKET, Type::RAW, Some(none))?, index))
    };
    let (socket, index) = match ns {
        Some(n) => {
            let fd = netns::open(n)?;
            netns::in_netns(fd.as_fd(), &n.to_string(), make)?.map_err(fail)?
        }
        None => make().map_err(fail)?,
    };
    if index == 0 {
        return Err(Error::NoInterface {
            place,
            ifname: ifname.to_string(),
        });
    }
    if let Some(f) = filter {
        attach(&socket, f).map_err(fail)?;
    }
    packet::bind(&socket, index, libc::ETH_P_ALL as u16).map_err(fail)?;
    socket.set_read_timeout(Some(WAKE)).map_err(fail)?;
    Ok(socket)
}

fn attach(socket: &Socket, program: &[Insn]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: prog points at insns, which outlive the call; the kernel
    // copies the program.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::addr_of!(prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Capture {
    /// Opens a capture on `ifname` in `ns` (the host's namespace when
    /// `None`), `filter` attached in the kernel.
    pub fn open(
        ns: Option<&NsRef>,
        ifname: &str,
        filter: Option<&[Insn]>,
    ) -> Result<Capture, Error> {
        Ok(Capture {
            socket: open(ns, ifname, filter)?,
            ifname: ifname.to_string(),
        })
    }

    /// Hands packets to `on_packet` until `count` packets, the stop flag,
    /// or `on_packet` fails; returns how many it handed over.
    pub fn run(
        &self,
        opts: &Options,
        mut on_packet: impl FnMut(&Packet) -> io::Result<()>,
    ) -> Result<u64, Error> {
        let (socket, ifname) = (&self.socket, &self.ifname);
        let mut buf = vec![0u8; SNAPLEN as usize];
        let mut seen = 0u64;
        while opts.count.is_none_or(|c| seen < c)
            && !opts.stop.is_some_and(|s| s.load(Ordering::Relaxed))
        {
            // MSG_TRUNC: the length on the wire, whatever was kept.
            let (n, from) = match packet::receive(socket, &mut buf, libc::MSG_TRUNC) {
                Ok(got) => got,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => continue,
                    _ => {
                        return Err(Error::Receive {
                            ifname: ifname.to_string(),
                            source: e,
                        })
                    }
                },
            };
            let wire_len = n;
            let packet = Packet {
                time: SystemTime::now(),
                outgoing: from.sll_pkttype == PACKET_OUTGOING,
                wire_len,
                data: &buf[..wire_len.min(buf.len())],
            };
            on_packet(&packet).map_err(Error::Write)?;
            seen += 1;
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpdumps_program_listing_is_read() {
        let text = "4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n";
        let p = parse_program(text).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[1],
            Insn {
                code: 21,
                jt: 0,
                jf: 1,
                k: 2048
            }
        );
        assert!(parse_program("3\n40 0 0 12\n").is_none(), "a short program");
        assert!(parse_program("").is_none());
    }

    #[test]
    fn pcap_records_carry_nanoseconds_and_both_lengths() {
        let h = file_header(SNAPLEN, LINKTYPE_ETHERNET);
        assert_eq!(&h[..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(h.len(), 24);
        let p = Packet {
            time: UNIX_EPOCH + Duration::new(7, 5),
            outgoing: true,
            wire_len: 100,
            data: &[1, 2, 3],
        };
        let r = record(&p);
        assert_eq!(
            &r[..16],
            &[7, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 100, 0, 0, 0]
        );
        assert_eq!(&r[16..], &[1, 2, 3]);
    }
}

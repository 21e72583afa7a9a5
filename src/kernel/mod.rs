//! Everything privileged, and nothing else: rtnetlink (`netlink`), the
//! nf_tables and conntrack netlink families (`nfnetlink`, `conntrack`),
//! namespaces (`netns`), `/proc/sys` (`sysctl`), per-namespace resolv.conf
//! files (`resolv`), ICMP echo (`ping`), listening sockets (`sockdiag`) and
//! the test sandbox (`sandbox`).
//!
//! This layer knows links, addresses, routes, namespaces and files; it
//! knows nothing of nsnet's networks, plans or records. It may import
//! `model` for the plain values it is handed (`NsRef`), and nothing else
//! of the crate.

pub mod bpf;
pub mod capture;
pub mod conntrack;
pub mod dad;
pub mod netlink;
pub mod netns;
pub mod nfnetlink;
pub mod nftrace;
pub mod packet;
pub mod ping;
pub mod resolv;
pub mod sandbox;
pub mod sockdiag;
pub mod sysctl;
pub mod watch;

/// A file in memory holding `bytes`, positioned at its start: the input
/// of a child process without a pipe, so that a child that exits before
/// reading all of it cannot kill nsnet with SIGPIPE.
pub fn memory_file(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    // SAFETY: the name is a NUL-terminated literal; the call has no other
    // inputs. A non-negative result is a new descriptor that we own.
    let fd = unsafe { libc::memfd_create(c"nsnet-nft".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file)
}

/// A flag that SIGTERM and/or SIGINT (as listed) set, for loops that stop
/// cleanly; one per process. Without SA_RESTART a blocked call returns
/// EINTR, so the loop sees the flag.
pub fn stop_on(signals: &[libc::c_int]) -> &'static std::sync::atomic::AtomicBool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }
    for &sig in signals {
        // SAFETY: the handler only stores to an atomic (async-signal-safe);
        // the sigaction struct is zeroed, then filled in.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    &STOP
}

/// Names the process as `ps` and `pgrep -x` show it.
pub fn name_process(name: &std::ffi::CStr) {
    // SAFETY: prctl(PR_SET_NAME) reads a NUL-terminated string we own.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
}

/// The local address this host would send from to reach `dest` (a UDP
/// socket's route lookup: no packet is sent).
pub fn source_towards(dest: std::net::SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let any: std::net::SocketAddr = if dest.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(dest)?;
    Ok(socket.local_addr()?.ip())
}

/// A failed kernel operation, from whichever interface carried it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error(transparent)]
    Sysctl(#[from] sysctl::Error),
    #[error(transparent)]
    Conntrack(#[from] conntrack::Error),
    #[error("writing {path}")]
    Resolv {
        path: String,
        source: std::io::Error,
    },
    #[error("listing the host's listening sockets (sock_diag)")]
    SockDiag(#[source] std::io::Error),
    #[error("sending a traced probe packet")]
    Probe(#[source] std::io::Error),
    #[error("no interface {ifname} in {target}")]
    NoSuchLink { target: String, ifname: String },
    #[error("{name} exists but is a {kind} link, not a bridge")]
    NotABridge { name: String, kind: String },
    #[error("impairing {ifname}: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM), so delay, jitter, corruption and duplication cannot be applied; rate (tbf) and loss (a bpf classifier) work")]
    NoNetem { ifname: String },
    #[error(transparent)]
    Bpf(#[from] bpf::Error),
    #[error(transparent)]
    Dad(#[from] dad::Error),
    #[error("starting {what}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
}

impl Error {
    /// The object an undo or teardown step wanted to remove is already gone.
    pub fn is_gone(&self) -> bool {
        match self {
            Error::Netlink(e) => matches!(
                e.errno(),
                Some(libc::ENODEV) | Some(libc::EADDRNOTAVAIL) | Some(libc::ESRCH)
            ),
            Error::Netns(netns::Error::NotFound(_)) => true,
            // The interface whose sysctl was to be put back is gone.
            Error::Sysctl(
                sysctl::Error::Read { source, .. } | sysctl::Error::Write { source, .. },
            ) => source.kind() == std::io::ErrorKind::NotFound,
            Error::NoSuchLink { .. } => true,
            _ => false,
        }
    }
}

/// Runs `step` for every item, carrying on past failures; returns the first
/// failure that is not about an object already gone. Teardown steps that
/// remove several objects all use it.
pub fn each_keep_going<T>(
    items: impl IntoIterator<Item = T>,
    mut step: impl FnMut(T) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut first = None;
    for item in items {
        if let Err(e) = step(item) {
            if !e.is_gone() && first.is_none() {
                first = Some(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Ends processes: SIGTERM to each of `first` and to each that `left`
/// reports later (children appearing meanwhile), once each, until `left`
/// reports none or `grace` passed; then the same with SIGKILL for five
/// seconds. Returns those still there. `left` says which still run (a
/// caller that knows a process by its pid and start time checks both, so
/// that a pid reused meanwhile is never signalled).
pub fn end_processes(
    first: Vec<i32>,
    grace: std::time::Duration,
    left: impl Fn() -> Vec<i32>,
) -> Vec<i32> {
    use std::time::{Duration, Instant};
    let drain = |sig: libc::c_int, first: Vec<i32>, limit: Duration| -> Vec<i32> {
        let end = Instant::now() + limit;
        let mut signalled = std::collections::HashSet::new();
        let mut now = first;
        while !now.is_empty() && Instant::now() < end {
            for p in now.iter().filter(|p| signalled.insert(**p)) {
                // SAFETY: kill(2) of a pid `left` vouched for.
                unsafe { libc::kill(*p, sig) };
            }
            std::thread::sleep(Duration::from_millis(10));
            now = left();
        }
        now
    };
    let still = drain(libc::SIGTERM, first, grace);
    if still.is_empty() {
        return still;
    }
    drain(libc::SIGKILL, still, Duration::from_secs(5))
}

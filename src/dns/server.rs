//! `nsnet dns`: the host's DNS server for nsnet networks, a small
//! synchronous loop (poll over one UDP socket and one TCP listener per
//! address it answers on: the gateways, and the host's addresses on
//! macvlan networks with host access; forwarded queries and TCP clients
//! on short-lived threads). It answers from the record, which it re-reads whenever the
//! state directory changed (the kernel says so through a watch on the
//! directory, asked before each query: a name resolves as soon as the
//! command that made it returns, and no query is dropped by a reload),
//! binds new addresses and drops old ones, and exits when no network needs
//! it. SIGTERM/SIGINT stop it.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::answer::{answer, Outcome};
use super::records::Table;
use crate::kernel::watch::DirWatch;
use crate::store::Store;

pub const PID_FILE: &str = "dns.pid";
pub const PORT: u16 = 53;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded queries and TCP clients in flight at most.
const MAX_THREADS: usize = 256;
const MAX_MESSAGE: usize = 65535;

fn log(text: &str) {
    eprintln!("nsnet-dns: {text}");
}

/// The host's own resolvers (`/etc/resolv.conf`), where names no network
/// knows go when the network names no servers of its own. A loopback stub
/// (127.0.0.53) works: the server runs in the host's namespace.
fn host_upstreams() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

struct Listener {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

fn bind(addr: IpAddr) -> io::Result<Listener> {
    let sa = SocketAddr::new(addr, PORT);
    let udp = UdpSocket::bind(sa)?;
    udp.set_nonblocking(true)?;
    let tcp = TcpListener::bind(sa)?;
    tcp.set_nonblocking(true)?;
    Ok(Listener {
        udp: Arc::new(udp),
        tcp,
    })
}

struct Server {
    store: Store,
    state_file: PathBuf,
    /// The record the table of names was built from.
    seen: Option<FileIds>,
    /// The record the listeners were last set from.
    listeners_seen: Option<FileIds>,
    /// Whether some network is served (the server exits when none is).
    needed: bool,
    table: Arc<Table>,
    listeners: BTreeMap<IpAddr, Listener>,
    host: Arc<Vec<IpAddr>>,
    threads: Arc<AtomicUsize>,
    checked: std::time::Instant,
    /// The state directory's changes; `None` where the kernel refuses a
    /// watch, and the files are then looked at once per `RECHECK`.
    watch: Option<DirWatch>,
}

/// Inode, mtime and size of the record, and of its change log if any.
type FileId = (u64, i64, i64, u64);
type FileIds = (FileId, Option<FileId>);

/// How stale the record may be under load when the state directory cannot
/// be watched.
const RECHECK: Duration = Duration::from_millis(1);

impl Server {
    /// Whether the record may have changed since it was last read. A
    /// command's change is in the watch's queue before the command returns,
    /// so before any query that follows it.
    fn may_have_changed(&self) -> bool {
        match &self.watch {
            Some(w) => w.changed(),
            None => self.checked.elapsed() >= RECHECK,
        }
    }

    /// The identity of the record and its change log as they are now.
    fn record_ids(&self) -> Option<FileIds> {
        // The record and its change log: either changing is a change.
        let meta = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
        };
        let changes = meta(&self.state_file.with_file_name(crate::store::LOG_FILE));
        meta(&self.state_file).map(|s| (s, changes))
    }

    /// Re-reads the record if it changed, names and all, to answer a
    /// query; false when the server is no longer needed.
    fn refresh(&mut self) -> bool {
        self.checked = std::time::Instant::now();
        let id = self.record_ids();
        if id.is_some() && id == self.seen {
            return self.needed;
        }
        self.seen = id;
        self.listeners_seen = id;
        let Some(state) = self.read() else {
            return true;
        };
        self.table = Arc::new(Table::from_state(&state));
        self.follow_networks(&state)
    }

    /// The loop's look at the record between queries: listeners follow
    /// the networks, and the server learns whether it is still needed.
    /// The names are left for the next query (`refresh`): building their
    /// table decodes every attachment, work wasted on each change while
    /// commands follow one another and nobody asks.
    fn refresh_listeners(&mut self) -> bool {
        let id = self.record_ids();
        if id.is_some() && id == self.listeners_seen {
            return self.needed;
        }
        self.listeners_seen = id;
        let Some(state) = self.read() else {
            return true;
        };
        self.follow_networks(&state)
    }

    fn read(&self) -> Option<crate::model::State> {
        self.store
            .read()
            .map_err(|e| log(&format!("reading the record: {}", crate::error_chain(&e))))
            .ok()
    }

    /// Listens where the networks `state` serves are answered, and
    /// nowhere else; false when it serves none (the server is no longer
    /// needed).
    fn follow_networks(&mut self, state: &crate::model::State) -> bool {
        let wanted = super::records::listen_addresses(state);
        self.needed = !wanted.is_empty();
        self.listeners.retain(|a, _| wanted.contains(a));
        for a in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.listeners.entry(a) {
                match bind(a) {
                    Ok(l) => {
                        log(&format!("listening on {a} port {PORT}"));
                        slot.insert(l);
                    }
                    Err(e) => log(&format!("cannot listen on {a} port {PORT}: {e}")),
                }
            }
        }
        self.needed
    }

    fn serve_udp(&mut self, addr: IpAddr) {
        let Some(l) = self.listeners.get(&addr) else {
            return;
        };
        let sock = l.udp.clone();
        let mut buf = vec![0u8; MAX_MESSAGE];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            // Always for a query from the host itself: a command that
            // starts the server or gives it a gateway asks one (from a
            // gateway address) and waits for the answer.
            let from_host = self.listeners.contains_key(&from.ip());
            if (from_host || self.may_have_changed()) && !self.refresh() {
                return;
            }
            match answer(&buf[..n], from.ip(), &self.table, true) {
                Outcome::Reply(bytes) => {
                    let _ = sock.send_to(&bytes, from);
                }
                Outcome::Forward(servers) => {
                    let servers = if servers.is_empty() {
                        self.host.to_vec()
                    } else {
                        servers
                    };
                    let query = buf[..n].to_vec();
                    let sock = sock.clone();
                    self.spawn(move || {
                        if let Some(reply) = forward_udp(&query, &servers) {
                            let _ = sock.send_to(&reply, from);
                        }
                    });
                }
                Outcome::Ignore => {}
            }
        }
    }

    fn serve_tcp(&mut self, addr: IpAddr) {
        // A TCP client is answered from the record as it is now, as a UDP
        // one is: without this, the table was the one of the last turn of
        // the loop, up to a poll timeout old, and a name connected a moment
        // ago went unanswered.
        if self.may_have_changed() && !self.refresh() {
            return;
        }
        let Some(l) = self.listeners.get(&addr) else {
            return;
        };
        while let Ok((conn, from)) = l.tcp.accept() {
            let table = self.table.clone();
            let host = self.host.clone();
            self.spawn(move || tcp_client(conn, from.ip(), &table, &host));
        }
    }

    fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        if self.threads.load(Ordering::Relaxed) >= MAX_THREADS {
            return;
        }
        self.threads.fetch_add(1, Ordering::Relaxed);
        let count = self.threads.clone();
        std::thread::spawn(move || {
            f();
            count.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn forward_udp(query: &[u8], servers: &[IpAddr]) -> Option<Vec<u8>> {
    for s in servers {
        let bind: SocketAddr = if s.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .ok()?;
        let Ok(sock) = UdpSocket::bind(bind) else {
            continue;
        };
        let _ = sock.set_read_timeout(Some(UPSTREAM_TIMEOUT));
        if sock.send_to(query, (*s, PORT)).is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_MESSAGE];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

fn forward_tcp(query: &[u8], servers: &[IpAddr]) -> Option<Vec<u8>> {
    for s in servers {
        let Ok(mut c) = TcpStream::connect_timeout(&SocketAddr::new(*s, PORT), UPSTREAM_TIMEOUT)
        else {
            continue;
        };
        let _ = c.set_read_timeout(Some(UPSTREAM_TIMEOUT));
        let len = u16::try_from(query.len()).ok()?.to_be_bytes();
        if c.write_all(&len).and_then(|_| c.write_all(query)).is_err() {
            continue;
        }
        if let Some(reply) = read_framed(&mut c) {
            return Some(reply);
        }
    }
    None
}

fn read_framed(c: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    c.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn tcp_client(mut conn: TcpStream, from: IpAddr, table: &Table, host: &[IpAddr]) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    while let Some(query) = read_framed(&mut conn) {
        let reply = match answer(&query, from, table, false) {
            Outcome::Reply(b) => Some(b),
            Outcome::Forward(s) => forward_tcp(&query, if s.is_empty() { host } else { &s }),
            Outcome::Ignore => return,
        };
        let Some(reply) = reply else { return };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        if conn
            .write_all(&len.to_be_bytes())
            .and_then(|_| conn.write_all(&reply))
            .is_err()
        {
            return;
        }
    }
}

/// Serves until no network needs it or a signal stops it. The PID file
/// appears once the first addresses are bound. It stays at exit: the
/// command that leaves no network with DNS reads it to wait for this
/// process to end, also when the server saw the record first and left on
/// its own; that command removes it.
pub fn run(state_dir: &Path) -> io::Result<()> {
    let stop = crate::kernel::stop_on(&[libc::SIGTERM, libc::SIGINT]);
    crate::kernel::name_process(c"nsnet-dns");
    let mut server = Server {
        store: Store::new(state_dir),
        state_file: state_dir.join(crate::store::STATE_FILE),
        seen: None,
        listeners_seen: None,
        needed: false,
        table: Arc::new(Table::default()),
        listeners: BTreeMap::new(),
        host: Arc::new(host_upstreams()),
        threads: Arc::new(AtomicUsize::new(0)),
        checked: std::time::Instant::now(),
        watch: DirWatch::new(state_dir)
            .map_err(|e| {
                log(&format!(
                    "watching {}: {e}; looking at the record once per millisecond instead",
                    state_dir.display()
                ))
            })
            .ok(),
    };
    let pid_file = state_dir.join(PID_FILE);
    if !server.refresh() {
        log("no network needs a DNS server; exiting");
        return Ok(());
    }
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))?;
    log(&format!("started (pid {})", std::process::id()));
    while !stop.load(Ordering::Relaxed) {
        let addrs: Vec<IpAddr> = server.listeners.keys().copied().collect();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        for a in &addrs {
            let l = &server.listeners[a];
            for fd in [l.udp.as_raw_fd(), l.tcp.as_raw_fd()] {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // SAFETY: `fds` is a live, correctly sized array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if n > 0 {
            for (i, a) in addrs.iter().enumerate() {
                if fds[2 * i].revents != 0 {
                    server.serve_udp(*a);
                }
                if fds[2 * i + 1].revents != 0 {
                    server.serve_tcp(*a);
                }
            }
        }
        if !server.refresh_listeners() {
            log("no network needs a DNS server any more; exiting");
            break;
        }
    }
    Ok(())
}

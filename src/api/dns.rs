//! Keeping the host's DNS server in step with the record: started by the
//! first command that leaves a network with DNS, checked to answer on
//! every gateway before that command returns, and stopped (waited for,
//! until the process has ended) by the command that leaves none.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use super::{Nsnet, Result};
use crate::dns::records::listen_addresses;
use crate::dns::server::{PID_FILE, PORT};
use crate::model::State;

const READY_WAIT: Duration = Duration::from_secs(1);
/// How long a command waits for the server it stops: it is gone within
/// milliseconds, unless the machine is loaded; the command returns as soon
/// as it is.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// The server's stderr, when a command started it.
pub const LOG_FILE: &str = "dns.log";

/// `nsnet dns`: serves the names of the networks recorded in `state_dir`
/// until no network needs it or a signal stops it (the daemon the
/// commands start).
pub fn serve(state_dir: &Path) -> Result<()> {
    crate::dns::server::run(state_dir).map_err(|source| super::Error::DnsServer {
        what: "serving",
        source,
    })
}

/// The server's PID, when one runs for this state directory. The PID file
/// outlives the server (a command that leaves no network with DNS removes
/// it once the process is gone), so its PID is checked.
pub fn running(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// Whether `pid` is a DNS server that has not exited: an exited one may
/// linger as a zombie, its sockets already closed.
fn alive(pid: i32) -> bool {
    // "PID (COMM) STATE ...".
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((comm, rest)) = stat.split_once(") ") else {
        return false;
    };
    comm.ends_with("(nsnet-dns") && !rest.starts_with(['Z', 'X'])
}

/// Whether the server answers on `addr` (a query for the gateway's zone
/// from the host itself, a member by its gateway address).
fn answers(addr: IpAddr) -> bool {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal address");
    let Ok(sock) = UdpSocket::bind(bind) else {
        return false;
    };
    // Short: a server still starting is asked again (up to READY_WAIT),
    // not waited for a whole timeout per question. Connected, so that the
    // port-unreachable error of a server not listening yet ends the wait
    // at once rather than after the timeout.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(5)));
    let mut m = Message::query();
    m.add_query(Query::query(Name::root(), RecordType::NS));
    let Ok(bytes) = m.to_vec() else {
        return false;
    };
    if sock.connect((addr, PORT)).is_err() || sock.send(&bytes).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    sock.recv(&mut buf).is_ok()
}

impl Nsnet {
    /// Starts, or stops, the DNS server as `state` needs; returns once it
    /// answers on every gateway (or is gone). When the command changed no
    /// gateway (`before` has the same ones) and the server runs, there is
    /// nothing to wait for: it re-reads the record before it answers the
    /// next query, so the command's names resolve as soon as it returns.
    pub(super) fn ensure_dns(&self, before: Option<&State>, state: &State) -> Result<()> {
        let dir = self.store.dir().to_path_buf();
        let wanted = listen_addresses(state);
        if before.is_some_and(|b| listen_addresses(b) == wanted) && running(&dir).is_some() {
            return Ok(());
        }
        if wanted.is_empty() {
            if let Some(pid) = running(&dir) {
                self.stop_dns(pid);
            }
            let _ = std::fs::remove_file(dir.join(PID_FILE));
            let _ = std::fs::remove_file(dir.join(LOG_FILE));
            return Ok(());
        }
        if running(&dir).is_none() {
            self.start_dns(&dir)?;
        }
        let end = Instant::now() + READY_WAIT;
        for addr in wanted {
            while !answers(addr) {
                if Instant::now() > end {
                    self.notice(format!(
                        "the DNS server does not answer on {addr} yet; see {}",
                        dir.join(LOG_FILE).display()
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Stops the server and waits until the process has ended, its sockets
    /// closed: the server may have seen the record first and be on its way
    /// out already, so the process is waited for, not its PID file.
    fn stop_dns(&self, pid: i32) {
        // SAFETY: kill(2) with a PID read from our PID file whose process
        // is named nsnet-dns; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + STOP_WAIT;
        while alive(pid) {
            if Instant::now() > end {
                self.notice(format!(
                    "the DNS server (pid {pid}) has not stopped {} s after SIGTERM",
                    STOP_WAIT.as_secs()
                ));
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn start_dns(&self, dir: &Path) -> Result<()> {
        let exe = std::env::current_exe().map_err(|source| super::Error::DnsServer {
            what: "finding the nsnet binary to start it",
            source,
        })?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))
            .map_err(|source| super::Error::DnsServer {
                what: "opening its log file",
                source,
            })?;
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .arg("--state-dir")
            .arg(dir)
            .arg("dns")
            .env_remove("CNI_COMMAND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|source| super::Error::DnsServer {
                what: "starting it",
                source,
            })?;
        Ok(())
    }
}

//! nsnet as a Docker Engine network driver (`nsnet docker-plugin`): a
//! foreground daemon serving Docker's legacy remote driver protocol on a
//! unix socket (`/run/docker/plugins/nsnet.sock`, where dockerd looks for
//! a driver named `nsnet`). A front end: it goes through `api` only.
//!
//! Docker never replays CreateNetwork (not after a restart of the plugin
//! or of dockerd), so nsnet's record is the driver's only truth: every call
//! is one journaled change, and the calls Docker may repeat are
//! idempotent.

pub mod protocol;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::api::Nsnet;
use crate::model::ports::PortMapping;
use crate::model::{Attachment, CreateRequest, Network};
use protocol::Backend;

/// Where dockerd finds the driver named `nsnet`.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/nsnet.sock";

/// How often the loop looks at the stop flag while no call comes.
const POLL: Duration = Duration::from_millis(250);
/// How often nsnet's rules in DOCKER-USER are compared with the record:
/// a dockerd restart, a firewall reload or `nsnet network create` change
/// one or the other.
const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot prepare the socket directory {}", dir.display())]
    SocketDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {}: {reason}", path.display())]
    Listen { path: PathBuf, reason: String },
}

/// One line on stderr, with the time since start (journald adds the date).
fn log(text: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("nsnet-docker: [{t:8.3}] {text}");
}

fn text(e: crate::api::Error) -> String {
    crate::error_chain(&e)
}

/// The driver: nsnet, and the networks Docker made, kept on disk. nsnet's
/// record lives on a tmpfs (it describes the kernel, which a reboot
/// empties), but Docker's networks outlive a reboot and Docker never sends
/// CreateNetwork again: the driver keeps each request as Docker sent it and
/// makes the network again when Docker first uses it after a reboot.
pub struct Plugin<'a> {
    nsnet: &'a Nsnet,
    /// Where Docker's CreateNetwork requests are kept, one file per ID.
    saved: PathBuf,
}

/// Where the driver keeps Docker's networks by default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/nsnet/docker";

impl<'a> Plugin<'a> {
    pub fn new(nsnet: &'a Nsnet, saved: PathBuf) -> Plugin<'a> {
        Plugin { nsnet, saved }
    }

    fn file(&self, id: &str) -> Option<PathBuf> {
        // IDs become file names: hexadecimal only.
        let hex = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| self.saved.join(format!("{id}.json")))
    }

    fn save(&self, id: &str, call: &[u8]) -> Result<(), String> {
        let file = self
            .file(id)
            .ok_or_else(|| format!("nsnet: bad network ID {id:?}"))?;
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.saved)?;
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, call)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &file)
        };
        write().map_err(|e| {
            format!(
                "nsnet: keeping network {id} in {}: {e}",
                self.saved.display()
            )
        })
    }

    /// Makes every kept network that nsnet's record lacks again, before
    /// Docker's first call: Docker asks the IPAM for an endpoint's address
    /// before it names the endpoint's network.
    fn restore_all(&self) {
        let Ok(dir) = std::fs::read_dir(&self.saved) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                if let Err(e) = self.restore(id) {
                    log(&e);
                }
            }
        }
    }

    /// Makes network `id` again from the request Docker sent, when nsnet's
    /// record lacks it (after a reboot); nothing when it has it.
    fn restore(&self, id: &str) -> Result<(), String> {
        match self.nsnet.docker_network(id) {
            Err(e) if missing(&e) => self.remake(id).map(drop),
            _ => Ok(()),
        }
    }

    /// `call` on network `id`; when nsnet's record lacks the network, it
    /// is made again from the request Docker sent and `call` runs again.
    fn restoring<T>(
        &self,
        id: &str,
        call: impl Fn() -> crate::api::Result<T>,
    ) -> Result<T, String> {
        match call() {
            Err(e) if missing(&e) => match self.remake(id)? {
                true => call().map_err(text),
                false => Err(text(e)),
            },
            other => other.map_err(text),
        }
    }

    /// Makes network `id` from the request Docker sent; false when there
    /// is none kept.
    fn remake(&self, id: &str) -> Result<bool, String> {
        let Some(call) = self.file(id).and_then(|f| std::fs::read(f).ok()) else {
            return Ok(false);
        };
        log(&format!(
            "network {}: made again from the request Docker sent",
            &id[..id.len().min(12)]
        ));
        let reply = protocol::handle("/NetworkDriver.CreateNetwork", &call, self);
        match reply.body.get("Err").and_then(|e| e.as_str()) {
            Some(e) => Err(format!("nsnet: making network {id} again: {e}")),
            None => Ok(true),
        }
    }
}

impl Backend for Plugin<'_> {
    fn create_network(&self, req: &CreateRequest, call: &[u8]) -> Result<Network, String> {
        let id = req.docker.as_deref().unwrap_or_default();
        let net = self.nsnet.docker_create_network(req).map_err(text)?;
        if let Err(e) = self.save(id, call) {
            let _ = self.nsnet.docker_delete_network(id);
            return Err(e);
        }
        Ok(net)
    }
    fn delete_network(&self, id: &str) -> Result<(), String> {
        self.nsnet.docker_delete_network(id).map_err(text)?;
        if let Some(f) = self.file(id) {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("nsnet: forgetting {}: {e}", f.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }
    fn create_endpoint(
        &self,
        id: &str,
        endpoint: &str,
        addresses: &[IpNet],
        mac: Option<String>,
    ) -> Result<(), String> {
        self.restoring(id, || {
            self.nsnet
                .docker_create_endpoint(id, endpoint, addresses, mac.clone())
        })
    }
    fn delete_endpoint(&self, id: &str, endpoint: &str) -> Result<(), String> {
        idempotent(self.nsnet.docker_delete_endpoint(id, endpoint))
    }
    fn join(
        &self,
        id: &str,
        endpoint: &str,
        sandbox: PathBuf,
    ) -> Result<(Attachment, Network), String> {
        self.restoring(id, || self.nsnet.docker_join(id, endpoint, sandbox.clone()))
    }
    fn leave(&self, id: &str, endpoint: &str) -> Result<(), String> {
        idempotent(self.nsnet.docker_leave(id, endpoint))
    }
    fn publish(&self, id: &str, endpoint: &str, ports: &[PortMapping]) -> Result<(), String> {
        self.nsnet
            .docker_publish(id, endpoint, ports)
            .map(drop)
            .map_err(text)
    }
    fn unpublish(&self, id: &str, endpoint: &str) -> Result<(), String> {
        idempotent(self.nsnet.docker_unpublish(id, endpoint))
    }
    fn request_pool(
        &self,
        asked: Option<IpNet>,
        range: Option<IpNet>,
        v6: bool,
    ) -> Result<IpNet, String> {
        self.nsnet
            .docker_request_pool(asked, range, v6)
            .map_err(text)
    }
    fn release_pool(&self, id: &str) -> Result<(), String> {
        self.nsnet.docker_release_pool(id).map_err(text)
    }
    fn request_address(
        &self,
        id: &str,
        asked: Option<std::net::IpAddr>,
        gateway: bool,
    ) -> Result<IpNet, String> {
        let asked_again = || self.nsnet.docker_request_address(id, asked, gateway);
        match asked_again() {
            // A pool Docker kept and nsnet's record lost (a reboot): its
            // ID says its CIDR and range.
            Err(crate::api::Error::Rejected(crate::model::Rejection::NoSuchPool { .. })) => {
                self.nsnet.docker_restore_pool(id).map_err(text)?;
                log(&format!("pool {id}: made again for Docker"));
                asked_again().map_err(text)
            }
            other => other.map_err(text),
        }
    }
    fn release_address(&self, id: &str, addr: std::net::IpAddr) -> Result<(), String> {
        self.nsnet.docker_release_address(id, addr).map_err(text)
    }
}

/// nsnet's record has no network of the Docker ID asked for.
fn missing(e: &crate::api::Error) -> bool {
    matches!(
        e,
        crate::api::Error::Rejected(crate::model::Rejection::NoSuchDockerNetwork { .. })
    )
}

/// What Docker asks to undo on a network nsnet no longer has (its record
/// lost after a reboot) is done already.
fn idempotent(r: crate::api::Result<()>) -> Result<(), String> {
    match r {
        Err(e) if missing(&e) => Ok(()),
        other => other.map_err(text),
    }
}

/// Whether a driver serves on `socket`: it answers Docker's handshake
/// within a second. A socket that only accepts is stale: a driver killed
/// a moment ago may still hold it while it exits (a supervisor restarting
/// it at once saw "another driver" there), and the kernel queues a
/// connection to it that nobody will answer.
fn answers(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let wait = Some(std::time::Duration::from_secs(1));
    if s.set_read_timeout(wait).is_err() || s.set_write_timeout(wait).is_err() {
        return false;
    }
    let asked = s.write_all(
        b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let mut head = [0u8; 8];
    asked.is_ok() && s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Binds `socket`, removing a stale one (left by a killed driver: no one
/// answers on it).
fn listen(socket: &Path) -> Result<tiny_http::Server, Error> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::SocketDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    if answers(socket) {
        return Err(Error::Listen {
            path: socket.to_path_buf(),
            reason: "another driver answers on it".into(),
        });
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Listen {
                path: socket.to_path_buf(),
                reason: e.to_string(),
            })
        }
        _ => {}
    }
    tiny_http::Server::http_unix(socket).map_err(|e| Error::Listen {
        path: socket.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Serves Docker on `socket` until SIGTERM or SIGINT; removes the socket
/// when it stops.
pub fn serve(nsnet: &Nsnet, socket: &Path, data_dir: &Path) -> Result<(), Error> {
    let plugin = Plugin::new(nsnet, data_dir.to_path_buf());
    let stop = crate::api::live::stop_on(&[libc::SIGTERM, libc::SIGINT]);
    crate::api::live::name_process(c"nsnet-docker");
    let server = listen(socket)?;
    log(&format!(
        "serving Docker on {} (pid {})",
        socket.display(),
        std::process::id()
    ));
    plugin.restore_all();
    sync_forward(nsnet);
    let mut synced = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => answer(&plugin, request),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => log(&format!("accepting a call: {e}")),
        }
        if synced.elapsed() >= SYNC_EVERY {
            sync_forward(nsnet);
            synced = Instant::now();
        }
    }
    drop(server);
    let _ = std::fs::remove_file(socket);
    log("stopped on signal; networks and endpoints stay as Docker left them");
    Ok(())
}

/// Brings nsnet's rules in Docker's DOCKER-USER in step with the record,
/// logging what it did.
fn sync_forward(nsnet: &Nsnet) {
    match nsnet.sync_docker_forward() {
        Ok(steps) => steps.iter().for_each(|s| log(s)),
        Err(e) => log(&format!("DOCKER-USER: {}", text(e))),
    }
}

/// Reads one call, answers it, logs it.
fn answer(plugin: &Plugin, mut request: tiny_http::Request) {
    let start = Instant::now();
    let path = request.url().to_string();
    let mut body = Vec::new();
    let reply = match request.as_reader().read_to_end(&mut body) {
        Ok(_) => protocol::handle(&path, &body, plugin),
        Err(e) => protocol::Reply {
            status: 400,
            body: serde_json::json!({ "Err": format!("nsnet: reading the request: {e}") }),
        },
    };
    // A network's bridge passes Docker's FORWARD chain before Docker
    // hears that the network exists.
    if path.ends_with(".CreateNetwork") || path.ends_with(".DeleteNetwork") {
        sync_forward(plugin.nsnet);
    }
    let error = reply.body.get("Err").or_else(|| reply.body.get("Error"));
    let outcome = match error.and_then(|e| e.as_str()) {
        Some(e) => format!("refused: {e}"),
        None => "ok".to_string(),
    };
    log(&format!(
        "{} {}: {outcome} ({:.1} ms)",
        path.trim_start_matches('/'),
        ids(&body),
        start.elapsed().as_secs_f64() * 1e3
    ));
    let header = tiny_http::Header::from_bytes("Content-Type", protocol::CONTENT_TYPE)
        .expect("a valid header");
    let response = tiny_http::Response::from_string(reply.body.to_string())
        .with_status_code(reply.status)
        .with_header(header);
    if let Err(e) = request.respond(response) {
        log(&format!("answering {path}: {e}"));
    }
}

/// The network and endpoint IDs of a call, shortened, for the log.
fn ids(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ["NetworkID", "EndpointID", "PoolID"]
        .iter()
        .filter_map(|k| v.get(k).and_then(|s| s.as_str()))
        .map(|s| match s.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => &s[..s.len().min(12)],
            false => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

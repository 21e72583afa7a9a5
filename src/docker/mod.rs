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

impl Backend for Nsnet {
    fn create_network(&self, req: &CreateRequest) -> Result<Network, String> {
        self.docker_create_network(req).map_err(text)
    }
    fn delete_network(&self, id: &str) -> Result<(), String> {
        self.docker_delete_network(id).map_err(text)
    }
    fn network(&self, id: &str) -> Result<Network, String> {
        self.docker_network(id).map_err(text)
    }
    fn create_endpoint(
        &self,
        id: &str,
        endpoint: &str,
        addresses: &[IpNet],
        mac: Option<String>,
    ) -> Result<(), String> {
        self.docker_create_endpoint(id, endpoint, addresses, mac)
            .map_err(text)
    }
    fn delete_endpoint(&self, id: &str, endpoint: &str) -> Result<(), String> {
        self.docker_delete_endpoint(id, endpoint).map_err(text)
    }
    fn join(&self, id: &str, endpoint: &str, sandbox: PathBuf) -> Result<Attachment, String> {
        self.docker_join(id, endpoint, sandbox).map_err(text)
    }
    fn leave(&self, id: &str, endpoint: &str) -> Result<(), String> {
        self.docker_leave(id, endpoint).map_err(text)
    }
    fn publish(&self, id: &str, endpoint: &str, ports: &[PortMapping]) -> Result<(), String> {
        self.docker_publish(id, endpoint, ports)
            .map(drop)
            .map_err(text)
    }
    fn unpublish(&self, id: &str, endpoint: &str) -> Result<(), String> {
        self.docker_unpublish(id, endpoint).map_err(text)
    }
    fn request_pool(&self, asked: Option<IpNet>, v6: bool) -> Result<IpNet, String> {
        self.docker_request_pool(asked, v6).map_err(text)
    }
    fn release_pool(&self, id: &str) -> Result<(), String> {
        self.docker_release_pool(id).map_err(text)
    }
    fn request_address(
        &self,
        id: &str,
        asked: Option<std::net::IpAddr>,
        gateway: bool,
    ) -> Result<IpNet, String> {
        self.docker_request_address(id, asked, gateway)
            .map_err(text)
    }
    fn release_address(&self, id: &str, addr: std::net::IpAddr) -> Result<(), String> {
        self.docker_release_address(id, addr).map_err(text)
    }
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
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
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
pub fn serve(nsnet: &Nsnet, socket: &Path) -> Result<(), Error> {
    let stop = crate::api::live::stop_on(&[libc::SIGTERM, libc::SIGINT]);
    crate::api::live::name_process(c"nsnet-docker");
    let server = listen(socket)?;
    log(&format!(
        "serving Docker on {} (pid {})",
        socket.display(),
        std::process::id()
    ));
    sync_forward(nsnet);
    let mut synced = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => answer(nsnet, request),
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
fn answer(nsnet: &Nsnet, mut request: tiny_http::Request) {
    let start = Instant::now();
    let path = request.url().to_string();
    let mut body = Vec::new();
    let reply = match request.as_reader().read_to_end(&mut body) {
        Ok(_) => protocol::handle(&path, &body, nsnet),
        Err(e) => protocol::Reply {
            status: 400,
            body: serde_json::json!({ "Err": format!("nsnet: reading the request: {e}") }),
        },
    };
    // A network's bridge passes Docker's FORWARD chain before Docker
    // hears that the network exists.
    if path.ends_with(".CreateNetwork") || path.ends_with(".DeleteNetwork") {
        sync_forward(nsnet);
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

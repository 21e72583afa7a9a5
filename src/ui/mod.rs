//! `nsnet ui`: a local web page with the live topology, traffic counters,
//! drift and traces, a front end over `api` (`api::view`, `api::trace`).
//!
//! Safety: it listens on loopback unless told otherwise, and every request
//! for data needs the token printed in the page's URL (as Jupyter does), so
//! that other local users cannot read it and other web pages (which
//! cannot learn the token) cannot drive it. A `Host` header that is not an
//! address of the listener or `localhost` is refused, which stops DNS
//! rebinding. The page and its scripts are in the binary: it works offline.
//! The layout is d3-force's (BSD-3-Clause, vendored under `vendor/`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tiny_http::{Header, Request, Response, Server};

use crate::api::trace::{Request as TraceRequest, Source, L4};
use crate::model::Rejection;
use crate::Nsnet;

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const D3: [&str; 5] = [
    include_str!("vendor/d3-dispatch.min.js"),
    include_str!("vendor/d3-quadtree.min.js"),
    include_str!("vendor/d3-timer.min.js"),
    include_str!("vendor/d3-collection.min.js"),
    include_str!("vendor/d3-force.min.js"),
];

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7780";

const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("reading a token from /dev/urandom")]
    Token(#[source] std::io::Error),
}

/// Refuses an address other than loopback unless `allow_remote`.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), Rejection> {
    if addr.ip().is_loopback() || allow_remote {
        return Ok(());
    }
    Err(Rejection::Unparsable {
        what: "listen address",
        value: addr.to_string(),
        expected: "a loopback address such as 127.0.0.1:7780 (the page shows your network to whoever reaches it; --allow-remote if you mean it)",
    })
}

fn token() -> Result<String, Error> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(Error::Token)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Serves until SIGTERM or SIGINT; prints the page's URL on stdout.
pub fn serve(nsnet: &Nsnet, addr: SocketAddr, allow_remote: bool) -> crate::Result<()> {
    check_listen(addr, allow_remote)?;
    let stop = crate::api::live::stop_on(&[libc::SIGTERM, libc::SIGINT]);
    let server = Server::http(addr)
        .map_err(|e| Error::Listen {
            addr,
            reason: e.to_string(),
        })
        .map_err(serve_error)?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    let token = token().map_err(serve_error)?;
    println!("http://{bound}/?token={token}");
    eprintln!(
        "nsnet ui: serving on {bound} (pid {}); Ctrl-C stops it",
        std::process::id()
    );
    let mut watch = nsnet.watch();
    let ctx = Ctx {
        nsnet,
        token: &token,
        bound,
        allow_remote,
    };
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(req)) => ctx.answer(req, &mut watch),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => eprintln!("nsnet ui: accepting a request: {e}"),
        }
    }
    eprintln!("nsnet ui: stopped on signal");
    Ok(())
}

fn serve_error(e: Error) -> crate::Error {
    crate::Error::Serve {
        what: "the web view",
        source: Box::new(e),
    }
}

struct Ctx<'a> {
    nsnet: &'a Nsnet,
    token: &'a str,
    bound: SocketAddr,
    allow_remote: bool,
}

/// The value of `key` in a query string (no percent-decoding beyond what
/// names, addresses and `host:PORT` need).
fn query(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%3A", ":").replace("%3a", ":"))
    })
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
}

impl Ctx<'_> {
    fn host_ok(&self, req: &Request) -> bool {
        if self.allow_remote {
            return true;
        }
        let Some(h) = req.headers().iter().find(|h| h.field.equiv("Host")) else {
            return false;
        };
        let host = h.value.as_str();
        let port = self.bound.port();
        host == format!("{}:{port}", self.bound.ip())
            || host == format!("localhost:{port}")
            || host == format!("127.0.0.1:{port}")
    }

    fn authorized(&self, req: &Request) -> bool {
        let given = query(req.url(), "token").or_else(|| {
            req.headers()
                .iter()
                .find(|h| h.field.equiv("X-Nsnet-Token"))
                .map(|h| h.value.as_str().to_string())
        });
        given.is_some_and(|t| same(&t, self.token))
    }

    fn answer(&self, req: Request, watch: &mut crate::api::view::Watch) {
        let path = req.url().split('?').next().unwrap_or("/").to_string();
        let (status, kind, body) = if !self.host_ok(&req) {
            (403, "text/plain", "forbidden: unknown Host\n".to_string())
        } else {
            match path.as_str() {
                // Code, not data: served without the token.
                "/app.js" => (200, "text/javascript", APP.to_string()),
                "/d3.js" => (200, "text/javascript", D3.join("\n")),
                _ if !self.authorized(&req) => (
                    403,
                    "text/html",
                    "<!doctype html><title>nsnet</title><p id=forbidden>forbidden: open the URL nsnet ui printed (it carries the token)</p>\n".to_string(),
                ),
                "/" => (200, "text/html", INDEX.to_string()),
                "/api/topology" => self.json(|| {
                    let state = self.nsnet.state()?;
                    let report = self.nsnet.check_watched(&state, watch)?;
                    Ok(serde_json::to_value(crate::api::view::topology(&state, &report))
                        .expect("serializes"))
                }),
                "/api/counters" => self.json(|| {
                    let state = self.nsnet.state()?;
                    Ok(serde_json::to_value(watch.counters(&state)?).expect("serializes"))
                }),
                "/api/trace" => self.json(|| self.trace(req.url())),
                _ => (404, "text/plain", "not found\n".to_string()),
            }
        };
        let response = Response::from_string(body)
            .with_status_code(status)
            .with_header(header("Content-Type", &format!("{kind}; charset=utf-8")))
            .with_header(header("Cache-Control", "no-store"))
            .with_header(header("X-Content-Type-Options", "nosniff"))
            .with_header(header("Referrer-Policy", "no-referrer"))
            .with_header(header(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'",
            ));
        if let Err(e) = req.respond(response) {
            eprintln!("nsnet ui: answering {path}: {e}");
        }
    }

    fn json(
        &self,
        f: impl FnOnce() -> crate::Result<serde_json::Value>,
    ) -> (u16, &'static str, String) {
        match f() {
            Ok(v) => (200, "application/json", v.to_string()),
            Err(e) => (
                500,
                "application/json",
                serde_json::json!({"error": crate::error_chain(&e)}).to_string(),
            ),
        }
    }

    fn trace(&self, url: &str) -> crate::Result<serde_json::Value> {
        let (Some(src), Some(dst)) = (query(url, "src"), query(url, "dst")) else {
            return Err(Rejection::Unparsable {
                what: "trace",
                value: url.to_string(),
                expected: "src and dst",
            }
            .into());
        };
        let l4 = match query(url, "proto").as_deref() {
            Some("udp") => L4::Udp,
            Some("tcp") => L4::Tcp,
            _ => L4::Icmp,
        };
        let port = query(url, "port").and_then(|p| p.parse().ok());
        let t = self.nsnet.trace(&TraceRequest {
            src: src.parse::<Source>()?,
            dst,
            port,
            l4,
            probe: false,
        })?;
        Ok(serde_json::to_value(t).expect("serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_asked_and_tokens_compare_whole() {
        assert!(check_listen("127.0.0.1:7780".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:7780".parse().unwrap(), false).is_ok());
        let err = check_listen("0.0.0.0:7780".parse().unwrap(), false).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(check_listen("0.0.0.0:7780".parse().unwrap(), true).is_ok());
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd") && !same("abc", "ab"));
        assert_eq!(
            query("/api/trace?src=h1&dst=host%3A80&token=x", "dst").as_deref(),
            Some("host:80")
        );
        assert_eq!(query("/?token=x", "src"), None);
        let t = token().unwrap();
        assert_eq!(t.len(), 32);
        assert_ne!(t, token().unwrap());
    }
}

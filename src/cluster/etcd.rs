//! A small blocking etcd v3 client over etcd's JSON gateway (`/v3/...`,
//! HTTP/1.1, keys and values base64, 64-bit numbers as strings): the calls
//! nsnet needs (range, put, delete, compare-and-swap transactions, leases,
//! watch) without an async runtime or a protobuf compiler. Endpoints are
//! tried in turn, starting with the one that served the last call; one
//! that is out of reach, or answers that it cannot serve now (no leader,
//! no quorum), is passed over.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::access::{Credentials, Login, Secret};
use super::{Error, TlsFault};

type Result<T> = std::result::Result<T, Error>;

/// How long a unary call may take before the endpoint counts as down.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Largest answer read (a range of many thousands of keys).
const BODY_LIMIT: u64 = 256 << 20;
/// The gRPC status etcd answers for a lease it does not know.
const GRPC_NOT_FOUND: i64 = 5;
/// The gRPC status of a member that cannot serve now (no leader, a leader
/// change, no quorum): another member may.
const GRPC_UNAVAILABLE: i64 = 14;
/// The gRPC status etcd answers for a token it no longer accepts.
const GRPC_UNAUTHENTICATED: i64 = 16;

/// A key-value pair with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    /// The key, and its value before the deletion when etcd still had it.
    Delete {
        key: String,
        prev: Option<KeyValue>,
    },
}

/// What a watch stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, with the store's revision after them.
    Events { revision: i64, events: Vec<Event> },
    /// The watch started from a revision etcd has compacted away: re-list.
    Compacted { revision: i64 },
}

/// A compare of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists with this create revision (unchanged identity).
    Created(String, i64),
    /// The key was last changed at this revision.
    Modified(String, i64),
}

/// A request of a transaction.
#[derive(Debug, Clone)]
pub enum TxnOp {
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Delete(String),
    Get(String),
}

/// What a transaction did: whether the compares held, and the key-values
/// its `Get` requests read (in order, flattened).
#[derive(Debug, Clone)]
pub struct TxnResult {
    pub succeeded: bool,
    pub kvs: Vec<KeyValue>,
}

pub struct Client {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    login: Option<Login>,
    /// The token of the last authentication, sent with every call.
    token: Mutex<Option<Secret>>,
    /// The index of the endpoint that served the last call.
    preferred: AtomicUsize,
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The end of the range of keys that start with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A 64-bit number of the gateway's JSON: a string, or absent for zero.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kv_of(v: &Value) -> Option<KeyValue> {
    let key = B64.decode(v["key"].as_str()?).ok()?;
    let value = match v["value"].as_str() {
        Some(s) => B64.decode(s).ok()?,
        None => Vec::new(),
    };
    Some(KeyValue {
        key: String::from_utf8(key).ok()?,
        value,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    })
}

fn kvs_of(v: &Value) -> Vec<KeyValue> {
    v["kvs"]
        .as_array()
        .map(|a| a.iter().filter_map(kv_of).collect())
        .unwrap_or_default()
}

impl Client {
    /// A client for these endpoints (`http://HOST:PORT` or
    /// `https://HOST:PORT`) with these credentials; nothing is contacted
    /// yet.
    pub fn new(endpoints: &[String], credentials: Credentials) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .tls_config(credentials.tls)
            .build()
            .into();
        Client {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            agent,
            login: credentials.login,
            token: Mutex::new(None),
            preferred: AtomicUsize::new(0),
        }
    }

    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// Posts to each endpoint in turn until one answers; an answer that is
    /// an error of etcd's is final (another member would say the same).
    /// With a user, the call carries a token, fetched first and fetched
    /// again once when etcd says it is no longer valid.
    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        self.call_within(path, body, CALL_TIMEOUT)
    }

    fn call_within(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
        let token = self.token(false)?;
        match self.post_json(path, body, timeout, token.as_ref()) {
            Err(Error::Refused {
                code: GRPC_UNAUTHENTICATED,
                ..
            }) if self.login.is_some() => {
                let token = self.token(true)?;
                self.post_json(path, body, timeout, token.as_ref())
            }
            other => other,
        }
    }

    /// The token to send: none without a user; the cached one unless
    /// `renew`; else a new one from `/v3/auth/authenticate`.
    fn token(&self, renew: bool) -> Result<Option<Secret>> {
        let Some(login) = &self.login else {
            return Ok(None);
        };
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(t), false) = (cached.as_ref(), renew) {
            return Ok(Some(t.clone()));
        }
        let body = json!({"name": login.user, "password": login.password.expose()});
        let v = match self.post_json("/v3/auth/authenticate", &body, CALL_TIMEOUT, None) {
            Ok(v) => v,
            Err(Error::Refused {
                endpoint, message, ..
            }) => {
                return Err(Error::Login {
                    endpoint,
                    user: login.user.clone(),
                    message,
                })
            }
            Err(e) => return Err(e),
        };
        let token = v["token"].as_str().map(|t| Secret::new(t.to_string()));
        *cached = token.clone();
        Ok(token)
    }

    /// The endpoints in the order to try them: the last one that served a
    /// call first (a member that is down costs one timeout, not one per
    /// call), then the others in the order given.
    fn order(&self) -> impl Iterator<Item = (usize, &String)> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |k| {
            let i = (first + k) % n;
            (i, &self.endpoints[i])
        })
    }

    /// Sends one request to one endpoint.
    fn send_to(
        &self,
        ep: &str,
        path: &str,
        bytes: &[u8],
        timeout: Option<Duration>,
        token: Option<&Secret>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut req = self
            .agent
            .post(format!("{ep}{path}"))
            .config()
            .timeout_global(timeout)
            .build()
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            // etcd's gateway takes the bare token, not "Bearer <token>".
            req = req.header("Authorization", t.expose());
        }
        req.send(bytes).map_err(|e| transport_error(ep, &e))
    }

    /// The error when no endpoint served a call: a TLS failure or a refusal
    /// as it was, else every endpoint named as out of reach.
    fn exhausted(&self, last: Option<Error>) -> Error {
        match last {
            Some(Error::Unreachable { reason, .. }) => Error::Unreachable {
                endpoints: self.endpoints(),
                reason,
            },
            Some(e) => e,
            None => Error::Unreachable {
                endpoints: self.endpoints(),
                reason: "no endpoint given".into(),
            },
        }
    }

    /// Posts to the endpoints in turn until one serves the call. An error
    /// of etcd's is final (another member would say the same), except
    /// UNAVAILABLE: no leader, a leader change, a member without quorum.
    fn post_json(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
        token: Option<&Secret>,
    ) -> Result<Value> {
        let bytes = serde_json::to_vec(body).expect("JSON of a request");
        let mut last = None;
        for (i, ep) in self.order() {
            match self.answer_of(ep, path, &bytes, timeout, token) {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(
                    e @ (Error::Unreachable { .. }
                    | Error::Tls { .. }
                    | Error::Refused {
                        code: GRPC_UNAVAILABLE,
                        ..
                    }),
                ) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(self.exhausted(last))
    }

    /// One endpoint's answer to a call, as JSON; an error answer as
    /// `Refused`.
    fn answer_of(
        &self,
        ep: &str,
        path: &str,
        bytes: &[u8],
        timeout: Duration,
        token: Option<&Secret>,
    ) -> Result<Value> {
        let resp = self.send_to(ep, path, bytes, Some(timeout), token)?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(|e| transport_error(ep, &e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::BadAnswer {
            endpoint: ep.to_string(),
            reason: format!("{e}: {text}"),
        })?;
        if status != 200 {
            return Err(Error::Refused {
                endpoint: ep.to_string(),
                status,
                code: int(&v["code"]),
                message: v["message"]
                    .as_str()
                    .or(v["error"].as_str())
                    .unwrap_or(&text)
                    .to_string(),
            });
        }
        Ok(v)
    }

    /// Keys starting with `prefix`, and the store's revision.
    pub fn range_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let v = self.call(
            "/v3/kv/range",
            &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )?;
        Ok((kvs_of(&v), int(&v["header"]["revision"])))
    }

    pub fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))?;
        Ok(kvs_of(&v).into_iter().next())
    }

    /// If every compare holds, runs `success`, else `failure`.
    pub fn txn(
        &self,
        compare: &[Compare],
        success: &[TxnOp],
        failure: &[TxnOp],
    ) -> Result<TxnResult> {
        let cmp: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => json!({"key": b64(k.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}),
                Compare::Created(k, r) => json!({"key": b64(k.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": r.to_string()}),
                Compare::Modified(k, r) => json!({"key": b64(k.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": r.to_string()}),
            })
            .collect();
        let ops = |ops: &[TxnOp]| -> Vec<Value> {
            ops.iter()
                .map(|o| match o {
                    TxnOp::Put { key, value, lease } => json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string()}}),
                    TxnOp::Delete(k) => json!({"request_delete_range": {"key": b64(k.as_bytes())}}),
                    TxnOp::Get(k) => json!({"request_range": {"key": b64(k.as_bytes())}}),
                })
                .collect()
        };
        let v = self.call(
            "/v3/kv/txn",
            &json!({"compare": cmp, "success": ops(success), "failure": ops(failure)}),
        )?;
        let kvs = v["responses"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .flat_map(|r| kvs_of(&r["response_range"]))
                    .collect()
            })
            .unwrap_or_default();
        Ok(TxnResult {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            kvs,
        })
    }

    /// A new lease of `ttl` seconds; its ID.
    pub fn grant(&self, ttl: u64) -> Result<i64> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        Ok(int(&v["ID"]))
    }

    /// Renews a lease; false when it has expired (its keys are gone). A
    /// renewal that takes longer than `timeout` counts as failed, so that
    /// the caller can retry well within the lease's TTL (a renewal through
    /// the gateway was seen to hang now and then).
    pub fn keep_alive(&self, lease: i64, timeout: Duration) -> Result<bool> {
        let v = self.call_within(
            "/v3/lease/keepalive",
            &json!({"ID": lease.to_string()}),
            timeout.min(CALL_TIMEOUT),
        )?;
        Ok(int(&v["result"]["TTL"]) > 0)
    }

    /// Ends a lease at once, deleting its keys.
    pub fn revoke(&self, lease: i64) -> Result<()> {
        match self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()})) {
            // Expired already (gRPC status NOT_FOUND): the same outcome.
            Err(Error::Refused {
                code: GRPC_NOT_FOUND,
                ..
            }) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Watches the keys under `prefix` from `revision` on, calling
    /// `on_message` for each message until it returns false or the stream
    /// ends (the endpoint went away: an error, so the caller re-lists).
    pub fn watch_prefix(
        &self,
        prefix: &str,
        revision: i64,
        mut on_message: impl FnMut(WatchMessage) -> bool,
    ) -> Result<()> {
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)),
            "start_revision": revision.to_string(), "prev_kv": true, "progress_notify": true
        }});
        let bytes = serde_json::to_vec(&body).expect("JSON of a request");
        let token = self.token(false)?;
        // No overall timeout: a watch lasts until the stream ends.
        let mut opened = None;
        let mut last = None;
        for (i, ep) in self.order() {
            match self.send_to(ep, "/v3/watch", &bytes, None, token.as_ref()) {
                Ok(r) if r.status() == 200 => {
                    self.preferred.store(i, Ordering::Relaxed);
                    opened = Some((ep.clone(), r));
                    break;
                }
                Ok(r) => {
                    last = Some(Error::Unreachable {
                        endpoints: ep.clone(),
                        reason: format!("the watch was answered with HTTP {}", r.status()),
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        let Some((ep, resp)) = opened else {
            return Err(self.exhausted(last));
        };
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| Error::Unreachable {
                endpoints: ep.clone(),
                reason: e.to_string(),
            })?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["error"].is_object() {
                // A token that lapsed: the next watch fetches a new one.
                if int(&v["error"]["grpc_code"]) == GRPC_UNAUTHENTICATED {
                    *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                return Err(Error::Refused {
                    endpoint: ep,
                    status: 200,
                    code: int(&v["error"]["grpc_code"]),
                    message: v["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            let Some(msg) = watch_message(&v["result"]) else {
                continue;
            };
            if !on_message(msg) {
                return Ok(());
            }
        }
        Err(Error::Unreachable {
            endpoints: ep,
            reason: "the watch stream ended".into(),
        })
    }
}

/// A transport failure as nsnet's error: TLS failures (a certificate that
/// does not verify, a client certificate the server refused) apart from
/// an endpoint out of reach.
fn transport_error(endpoint: &str, e: &ureq::Error) -> Error {
    use std::io::ErrorKind;
    let rustls_fault = |r: &rustls::Error| match r {
        rustls::Error::InvalidCertificate(_) => TlsFault::ServerCertificate,
        rustls::Error::AlertReceived(_) => TlsFault::ClientRefused,
        _ => TlsFault::Other,
    };
    let tls = match e {
        ureq::Error::Rustls(r) => Some((rustls_fault(r), r.to_string())),
        ureq::Error::Tls(r) => Some((TlsFault::Other, r.to_string())),
        ureq::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(r) => Some((rustls_fault(r), r.to_string())),
            // With TLS 1.3 a server checks the client's certificate after
            // the client's side of the handshake is done, and closes the
            // connection when it refuses it: the client often sees its
            // request cut off rather than the alert.
            None if endpoint.starts_with("https://")
                && matches!(
                    io.kind(),
                    ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ) =>
            {
                Some((
                    TlsFault::ClientRefused,
                    format!("the connection was closed after the handshake: {io}"),
                ))
            }
            None => None,
        },
        _ => None,
    };
    match tls {
        Some((fault, reason)) => Error::Tls {
            endpoint: endpoint.to_string(),
            fault,
            reason,
        },
        None => Error::Unreachable {
            endpoints: endpoint.to_string(),
            reason: e.to_string(),
        },
    }
}

fn watch_message(r: &Value) -> Option<WatchMessage> {
    let revision = int(&r["header"]["revision"]);
    if int(&r["compact_revision"]) > 0 {
        return Some(WatchMessage::Compacted {
            revision: int(&r["compact_revision"]),
        });
    }
    let events = r["events"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| {
                    let kv = kv_of(&e["kv"])?;
                    Some(if e["type"].as_str() == Some("DELETE") {
                        Event::Delete {
                            key: kv.key,
                            prev: kv_of(&e["prev_kv"]),
                        }
                    } else {
                        Event::Put(kv)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(WatchMessage::Events { revision, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_are_the_next_key() {
        assert_eq!(prefix_end("/nsnet/"), b"/nsnet0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn watch_messages_are_read_from_the_gateway_json() {
        let put = json!({"header": {"revision": "7"}, "events": [
            {"kv": {"key": b64(b"/k"), "value": b64(b"v"), "create_revision": "5", "mod_revision": "7", "lease": "9"}},
            {"type": "DELETE", "kv": {"key": b64(b"/j"), "mod_revision": "7"}, "prev_kv": {"key": b64(b"/j"), "value": b64(b"old")}}
        ]});
        let Some(WatchMessage::Events { revision, events }) = watch_message(&put) else {
            panic!("not events");
        };
        assert_eq!(revision, 7);
        assert!(
            matches!(&events[0], Event::Put(kv) if kv.key == "/k" && kv.value == b"v" && kv.lease == 9)
        );
        assert!(
            matches!(&events[1], Event::Delete { key, prev: Some(p) } if key == "/j" && p.value == b"old")
        );
        let compacted =
            json!({"header": {"revision": "9"}, "compact_revision": "4", "canceled": true});
        assert_eq!(
            watch_message(&compacted),
            Some(WatchMessage::Compacted { revision: 4 })
        );
    }
}

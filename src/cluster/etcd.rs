//! A small blocking etcd v3 client over etcd's JSON gateway (`/v3/...`,
//! HTTP/1.1, keys and values base64, 64-bit numbers as strings): the calls
//! nsnet needs (range, put, delete, compare-and-swap transactions, leases,
//! watch) without an async runtime or a protobuf compiler. Endpoints are
//! tried in order; the first that answers serves the call.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::Error;

type Result<T> = std::result::Result<T, Error>;

/// How long a unary call may take before the endpoint counts as down.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Largest answer read (a range of many thousands of keys).
const BODY_LIMIT: u64 = 256 << 20;
/// The gRPC status etcd answers for a lease it does not know.
const GRPC_NOT_FOUND: i64 = 5;

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
    /// A client for these endpoints (`http://HOST:PORT`); nothing is
    /// contacted yet.
    pub fn new(endpoints: &[String]) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        Client {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            agent,
        }
    }

    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// Posts to each endpoint in turn until one answers; an answer that is
    /// an error of etcd's is final (another member would say the same).
    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        self.call_within(path, body, CALL_TIMEOUT)
    }

    fn call_within(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
        let bytes = serde_json::to_vec(body).expect("JSON of a request");
        let mut last = None;
        for ep in &self.endpoints {
            let url = format!("{ep}{path}");
            let sent = self
                .agent
                .post(&url)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .header("Content-Type", "application/json")
                .send(&bytes[..]);
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e.to_string());
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = resp
                .into_body()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_string()
                .map_err(|e| Error::Unreachable {
                    endpoints: ep.clone(),
                    reason: e.to_string(),
                })?;
            let v: Value = serde_json::from_str(&text).map_err(|e| Error::BadAnswer {
                endpoint: ep.clone(),
                reason: format!("{e}: {text}"),
            })?;
            if status != 200 {
                return Err(Error::Refused {
                    endpoint: ep.clone(),
                    status,
                    code: int(&v["code"]),
                    message: v["message"]
                        .as_str()
                        .or(v["error"].as_str())
                        .unwrap_or(&text)
                        .to_string(),
                });
            }
            return Ok(v);
        }
        Err(Error::Unreachable {
            endpoints: self.endpoints(),
            reason: last.unwrap_or_else(|| "no endpoint given".into()),
        })
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

    pub fn delete(&self, key: &str) -> Result<()> {
        self.call("/v3/kv/deleterange", &json!({"key": b64(key.as_bytes())}))?;
        Ok(())
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
        let mut last = None;
        for ep in &self.endpoints {
            let resp = match self
                .agent
                .post(&format!("{ep}/v3/watch"))
                .header("Content-Type", "application/json")
                .send(&bytes[..])
            {
                Ok(r) if r.status() == 200 => r,
                Ok(r) => {
                    last = Some(format!("HTTP {}", r.status()));
                    continue;
                }
                Err(e) => {
                    last = Some(e.to_string());
                    continue;
                }
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
                let Some(msg) = watch_message(&v["result"]) else {
                    continue;
                };
                if !on_message(msg) {
                    return Ok(());
                }
            }
            return Err(Error::Unreachable {
                endpoints: ep.clone(),
                reason: "the watch stream ended".into(),
            });
        }
        Err(Error::Unreachable {
            endpoints: self.endpoints(),
            reason: last.unwrap_or_else(|| "no endpoint given".into()),
        })
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

//! The cluster store: etcd, holding each overlay network's definition and
//! the hosts' claims on host subnets (flannel's scheme). Definitions and
//! claims are made by compare-and-swap transactions, so hosts that race get
//! one definition and distinct subnets; claims are bound to a lease that the
//! host's agent keeps alive, so a dead host's claim expires.
//!
//! Key layout (all under `/nsnet/v1/`, values JSON):
//! - `networks/NAME/config`: `OverlayConfig`, no lease;
//! - `vnis/VNI`: the name of the network using the VNI, no lease;
//! - `networks/NAME/subnets/A.B.C.D-LEN`: a `Reservation`, on the claiming
//!   host's lease.
//!
//! Imports `model` only.

pub mod access;
pub mod etcd;

use std::collections::BTreeSet;

use ipnet::Ipv4Net;

use crate::model::overlay::{keys, EtcdAccess, OverlayConfig, Reservation};
use crate::model::Rejection;
use etcd::{Client, Compare, KeyValue, TxnOp};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("etcd at {endpoints} is unreachable: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("etcd at {endpoint} refused the request (HTTP {status}): {message}")]
    Refused {
        endpoint: String,
        status: u16,
        code: i64,
        message: String,
    },
    #[error("{}", fault.describe(endpoint, reason))]
    Tls {
        endpoint: String,
        fault: TlsFault,
        reason: String,
    },
    #[error("etcd at {endpoint} refused user {user}: {message}")]
    Login {
        endpoint: String,
        user: String,
        message: String,
    },
    #[error("cannot read etcd {what} {}", path.display())]
    ReadCredential {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("etcd {what} {} is not usable: {reason}", path.display())]
    BadCredential {
        what: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(
        "etcd user {user} needs a password: set {} or --etcd-password-file",
        access::PASSWORD_ENV
    )]
    NoPassword { user: String },
    #[error("etcd at {endpoint} gave an answer nsnet cannot read: {reason}")]
    BadAnswer { endpoint: String, reason: String },
    #[error("etcd key {key} holds something nsnet cannot read: {reason}")]
    BadRecord { key: String, reason: String },
    #[error("host subnets of overlay network {network} kept changing under this host's claim; gave up after {tries} tries")]
    Contended { network: String, tries: u32 },
    #[error("host subnet {subnet} of overlay network {network} is claimed by host {holder}: this host's claim lapsed and another host took it")]
    SubnetTaken {
        network: String,
        subnet: Ipv4Net,
        holder: std::net::IpAddr,
    },
    #[error("{0}")]
    Rejected(#[from] Rejection),
}

/// Which side of a TLS connection to etcd found fault with the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFault {
    /// etcd's certificate did not verify here.
    ServerCertificate,
    /// etcd refused this host's client certificate (or its absence).
    ClientRefused,
    /// Anything else of TLS.
    Other,
}

impl TlsFault {
    fn describe(self, endpoint: &str, reason: &str) -> String {
        match self {
            TlsFault::ServerCertificate => format!(
                "the certificate of etcd at {endpoint} does not verify ({reason}): is --etcd-ca the CA that signed it, and does it name the address in the URL?"
            ),
            TlsFault::ClientRefused => format!(
                "etcd at {endpoint} refused this host's client certificate ({reason}): give --etcd-cert and --etcd-key, signed by a CA etcd trusts and not expired"
            ),
            TlsFault::Other => format!("TLS with etcd at {endpoint} failed: {reason}"),
        }
    }
}

impl Error {
    /// Whether the host's own settings are at fault (a credential file
    /// missing or unusable, no password), not etcd or the way to it.
    pub fn is_bad_setting(&self) -> bool {
        matches!(
            self,
            Error::ReadCredential { .. } | Error::BadCredential { .. } | Error::NoPassword { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// How often a claim is retried when another host wins the race.
const CLAIM_TRIES: u32 = 64;

/// nsnet's records in one etcd cluster.
pub struct Registry {
    client: Client,
}

/// What `Registry::claim` claims, for whom, and where it starts looking.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub network: &'a str,
    pub config: &'a OverlayConfig,
    /// The create revision of the definition the claim relies on.
    pub defined_at: i64,
    pub reservation: &'a Reservation,
    pub lease: i64,
    /// The lease of the subnet's hold (0: no hold written).
    pub hold_lease: i64,
    /// The subnet this host must get back (its bridge has it), if any.
    pub wanted: Option<Ipv4Net>,
    pub seed: u64,
}

/// A host subnet and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub subnet: Ipv4Net,
    pub reservation: Reservation,
    pub lease: i64,
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON of a record")
}

fn parse<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> Result<T> {
    serde_json::from_slice(&kv.value).map_err(|e| Error::BadRecord {
        key: kv.key.clone(),
        reason: e.to_string(),
    })
}

impl Registry {
    /// The registry at `endpoints`, reached as `access` says (its files are
    /// read now; nothing is contacted yet).
    pub fn connect(endpoints: &[String], access: &EtcdAccess) -> Result<Registry> {
        Ok(Registry {
            client: Client::new(endpoints, access::load(access)?),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Defines the network if nobody has, atomically with its VNI; returns
    /// whether this call defined it and the definition's create revision.
    /// An existing definition must match `config` (else `OverlayConflict`).
    pub fn define_or_join(&self, network: &str, config: &OverlayConfig) -> Result<(bool, i64)> {
        let (ck, vk) = (keys::config(network), keys::vni(config.vni));
        let r = self.client.txn(
            &[Compare::Absent(ck.clone()), Compare::Absent(vk.clone())],
            &[
                TxnOp::Put {
                    key: ck.clone(),
                    value: json(config),
                    lease: 0,
                },
                TxnOp::Put {
                    key: vk.clone(),
                    value: network.as_bytes().to_vec(),
                    lease: 0,
                },
                TxnOp::Get(ck.clone()),
            ],
            &[TxnOp::Get(ck.clone()), TxnOp::Get(vk.clone())],
        )?;
        let existing = r.kvs.iter().find(|kv| kv.key == ck);
        if r.succeeded {
            let rev = existing.map_or(0, |kv| kv.create_revision);
            return Ok((true, rev));
        }
        if let Some(kv) = existing {
            let theirs: OverlayConfig = parse(kv)?;
            if &theirs != config {
                return Err(Rejection::OverlayConflict {
                    network: network.to_string(),
                    theirs: describe(&theirs),
                    ours: describe(config),
                }
                .into());
            }
            return Ok((false, kv.create_revision));
        }
        let holder = r
            .kvs
            .iter()
            .find(|kv| kv.key == vk)
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .unwrap_or_default();
        Err(Rejection::VniTaken {
            vni: config.vni,
            network: holder,
        }
        .into())
    }

    /// The claims on host subnets of a network, and the store's revision.
    pub fn claims(&self, network: &str) -> Result<(Vec<Claim>, i64)> {
        let (kvs, rev) = self.client.range_prefix(&keys::subnets(network))?;
        let claims = kvs
            .iter()
            .filter_map(|kv| claim_of(network, kv).ok())
            .collect();
        Ok((claims, rev))
    }

    /// The holds of a network: each subnet's last host, while its hold
    /// lease lasts.
    pub fn holds(&self, network: &str) -> Result<Vec<(Ipv4Net, Reservation)>> {
        let (kvs, _) = self.client.range_prefix(&keys::holds(network))?;
        Ok(kvs
            .iter()
            .filter_map(|kv| Some((keys::parse_hold(network, &kv.key)?, parse(kv).ok()?)))
            .collect())
    }

    /// A free subnet for a new claim: one neither claimed nor held by
    /// another host if there is one, else one not claimed.
    fn free_subnet(&self, req: &ClaimRequest, claims: &[Claim]) -> Result<Option<Ipv4Net>> {
        let taken: BTreeSet<Ipv4Net> = claims.iter().map(|c| c.subnet).collect();
        let held: BTreeSet<Ipv4Net> = self
            .holds(req.network)?
            .into_iter()
            .filter(|(_, r)| r.vtep != req.reservation.vtep)
            .map(|(s, _)| s)
            .collect();
        let start = req.seed % req.config.host_subnet_count();
        let avoid: BTreeSet<Ipv4Net> = taken.union(&held).copied().collect();
        Ok(req
            .config
            .free_host_subnet(&avoid, start)
            .or_else(|| req.config.free_host_subnet(&taken, start)))
    }

    /// Claims a host subnet for `reservation` under `lease`: the one this
    /// host holds already (re-bound to the lease), else `wanted` when given
    /// (a restart must get back the subnet its bridge has), else a free one
    /// from a place derived from `seed`. Each claim also rewrites the
    /// definition, which it requires unchanged, so that the last host's
    /// `leave` cannot delete a definition a new claim relies on.
    pub fn claim(&self, req: &ClaimRequest) -> Result<Ipv4Net> {
        let ClaimRequest {
            network,
            config,
            defined_at,
            reservation,
            lease,
            hold_lease,
            wanted,
            ..
        } = *req;
        for _ in 0..CLAIM_TRIES {
            let (claims, _) = self.claims(network)?;
            let mine = claims
                .iter()
                .find(|c| c.reservation.vtep == reservation.vtep);
            let (subnet, compare) = match (mine, wanted) {
                (Some(c), w) if w.is_none_or(|w| w == c.subnet) => {
                    let key = keys::subnet(network, &c.subnet);
                    let rev = self.client.get(&key)?.map_or(0, |kv| kv.mod_revision);
                    (c.subnet, Compare::Modified(key, rev))
                }
                (_, Some(w)) => {
                    if let Some(other) = claims.iter().find(|c| c.subnet == w) {
                        return Err(Error::SubnetTaken {
                            network: network.to_string(),
                            subnet: w,
                            holder: other.reservation.vtep,
                        });
                    }
                    (w, Compare::Absent(keys::subnet(network, &w)))
                }
                (_, None) => {
                    let free = self.free_subnet(req, &claims)?.ok_or_else(|| {
                        Rejection::NoFreeHostSubnet {
                            network: network.to_string(),
                            subnet: config.subnet,
                            length: config.host_subnet_len,
                            count: config.host_subnet_count(),
                        }
                    })?;
                    (free, Compare::Absent(keys::subnet(network, &free)))
                }
            };
            let ck = keys::config(network);
            let mut puts = vec![
                TxnOp::Put {
                    key: keys::subnet(network, &subnet),
                    value: json(reservation),
                    lease,
                },
                TxnOp::Put {
                    key: ck.clone(),
                    value: json(config),
                    lease: 0,
                },
            ];
            if hold_lease != 0 {
                puts.push(TxnOp::Put {
                    key: keys::hold(network, &subnet),
                    value: json(reservation),
                    lease: hold_lease,
                });
            }
            let r = self
                .client
                .txn(&[compare, Compare::Created(ck, defined_at)], &puts, &[])?;
            if r.succeeded {
                return Ok(subnet);
            }
        }
        Err(Error::Contended {
            network: network.to_string(),
            tries: CLAIM_TRIES,
        })
    }

    /// Gives up this host's claim; the last host to leave also removes the
    /// definition and its VNI (unless a claim came in meanwhile: every
    /// claim rewrites the definition, which the removal requires unchanged).
    pub fn leave(&self, network: &str, config: &OverlayConfig, subnet: &Ipv4Net) -> Result<bool> {
        // A host that leaves says so: its subnet needs no hold.
        self.client.txn(
            &[],
            &[
                TxnOp::Delete(keys::subnet(network, subnet)),
                TxnOp::Delete(keys::hold(network, subnet)),
            ],
            &[],
        )?;
        let (claims, _) = self.claims(network)?;
        if !claims.is_empty() {
            return Ok(false);
        }
        let ck = keys::config(network);
        let Some(def) = self.client.get(&ck)? else {
            return Ok(true);
        };
        let r = self.client.txn(
            &[Compare::Modified(ck.clone(), def.mod_revision)],
            &[TxnOp::Delete(ck), TxnOp::Delete(keys::vni(config.vni))],
            &[],
        )?;
        Ok(r.succeeded)
    }
}

/// What a host claims again after its lease lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaim {
    pub reservation: Reservation,
    pub subnet: Ipv4Net,
    pub lease: i64,
    pub hold_lease: i64,
}

/// A change among a network's claims, as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimChange {
    /// A host claimed a subnet, or changed its claim.
    Claimed(Claim),
    /// A host's claim went (it left, or its lease lapsed).
    Released(Ipv4Net),
}

/// What the agent asks of the cluster store, behind a trait so that its
/// loops are unit-tested against a fake store (a lease lost, a watch lost,
/// a compaction, the store out of reach, peers coming and going).
pub trait Cluster: Send + Sync {
    /// The claims on host subnets of a network, and the store's revision
    /// to watch from.
    fn claims(&self, network: &str) -> Result<(Vec<Claim>, i64)>;
    /// Follows the claims from `revision + 1`, handing each batch of
    /// changes to `on` until it returns false. Returns `Ok` when `on` said
    /// stop or the store compacted past `revision` (list again), an error
    /// when the watch was lost.
    fn watch_claims(
        &self,
        network: &str,
        revision: i64,
        on: &mut dyn FnMut(Vec<ClaimChange>) -> bool,
    ) -> Result<()>;
    fn grant(&self, ttl: u64) -> Result<i64>;
    /// Whether the lease is still alive (false: it lapsed).
    fn keep_alive(&self, lease: i64, timeout: std::time::Duration) -> Result<bool>;
    fn revoke(&self, lease: i64) -> Result<()>;
    /// Claims `subnet` again for this host under `lease` (and its hold
    /// under `hold_lease`), defining the network anew if its definition
    /// went with the last claim. `SubnetTaken` when another host has it.
    fn reclaim(&self, network: &str, config: &OverlayConfig, again: &Reclaim) -> Result<()>;
}

impl Cluster for Registry {
    fn claims(&self, network: &str) -> Result<(Vec<Claim>, i64)> {
        Registry::claims(self, network)
    }

    fn watch_claims(
        &self,
        network: &str,
        revision: i64,
        on: &mut dyn FnMut(Vec<ClaimChange>) -> bool,
    ) -> Result<()> {
        self.client
            .watch_prefix(&keys::subnets(network), revision + 1, |msg| {
                let events = match msg {
                    etcd::WatchMessage::Compacted { .. } => return false,
                    etcd::WatchMessage::Events { events, .. } => events,
                };
                let changes = events
                    .into_iter()
                    .filter_map(|e| match e {
                        etcd::Event::Put(kv) => {
                            claim_of(network, &kv).ok().map(ClaimChange::Claimed)
                        }
                        etcd::Event::Delete { key, .. } => {
                            keys::parse_subnet(network, &key).map(ClaimChange::Released)
                        }
                    })
                    .collect();
                on(changes)
            })
    }

    fn grant(&self, ttl: u64) -> Result<i64> {
        self.client.grant(ttl)
    }

    fn keep_alive(&self, lease: i64, timeout: std::time::Duration) -> Result<bool> {
        self.client.keep_alive(lease, timeout)
    }

    fn revoke(&self, lease: i64) -> Result<()> {
        self.client.revoke(lease)
    }

    fn reclaim(&self, network: &str, config: &OverlayConfig, again: &Reclaim) -> Result<()> {
        let (_, defined_at) = self.define_or_join(network, config)?;
        self.claim(&ClaimRequest {
            network,
            config,
            defined_at,
            reservation: &again.reservation,
            lease: again.lease,
            hold_lease: again.hold_lease,
            wanted: Some(again.subnet),
            seed: 0,
        })?;
        Ok(())
    }
}

/// A claim read from its key-value.
pub fn claim_of(network: &str, kv: &KeyValue) -> Result<Claim> {
    let subnet = keys::parse_subnet(network, &kv.key).ok_or_else(|| Error::BadRecord {
        key: kv.key.clone(),
        reason: "not a host subnet key".into(),
    })?;
    Ok(Claim {
        subnet,
        reservation: parse(kv)?,
        lease: kv.lease,
    })
}

fn describe(c: &OverlayConfig) -> String {
    format!(
        "subnet {}, host subnets /{}, VNI {}, port {}",
        c.subnet, c.host_subnet_len, c.vni, c.port
    )
}

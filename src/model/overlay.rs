//! Overlay networks: one network across hosts, flannel's L3 design. The
//! network's definition and every host's claim on a host subnet live in
//! etcd; each host routes the other hosts' subnets over one VXLAN device.
//! This module holds the values and the key layout (pure); `cluster` talks
//! to etcd and `kernel` programs the peers.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::Rejection;

/// Every key nsnet writes to etcd starts with this.
pub const KEY_PREFIX: &str = "/nsnet/v1/";
/// The IANA VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
pub const DEFAULT_HOST_SUBNET_LEN: u8 = 24;
/// Seconds a host's claims outlive its agent.
pub const DEFAULT_LEASE_TTL: u64 = 20;
/// A host subnet whose claim lapsed stays held for its host this many
/// lease TTLs more: another host gets it only when no subnet is free of
/// both claims and holds (a host cut off from etcd finds its subnet again).
pub const HOLD_TTLS: u64 = 10;
/// IPv4 underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Routes, neighbours and FDB entries of peers carry this protocol number,
/// so that the agent can tell its own entries from anyone else's.
pub const PEER_ROUTE_PROTOCOL: u8 = 0x4e; // 'N'

/// The cluster-wide definition, the same on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayConfig {
    pub subnet: Ipv4Net,
    pub host_subnet_len: u8,
    pub vni: u32,
    pub port: u16,
}

/// A host's claim on one host subnet: what peers need to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// The VTEP address on the underlay; also the host's identity.
    pub vtep: IpAddr,
    /// The MAC of the host's VXLAN device.
    pub vtep_mac: String,
}

/// One peer host as the kernel needs it: its subnet, VTEP and VXLAN MAC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub vtep: IpAddr,
    pub mac: [u8; 6],
}

impl Peer {
    /// The on-link next hop for the peer's subnet: its network address,
    /// which the peer's VXLAN device carries.
    pub fn next_hop(&self) -> Ipv4Addr {
        self.subnet.network()
    }
}

/// How a host reaches etcd beyond its endpoints: TLS files and an etcd
/// user. Paths and a name only, so that it may be recorded and shown: a
/// private key or a password never is (the password is read from
/// `password_file` or `NSNET_ETCD_PASSWORD` when a connection is made).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdAccess {
    /// PEM certificates of the CAs that sign etcd's server certificates
    /// (default: the public web roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain) and its private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// An etcd user (`etcdctl user add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file holding the user's password (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl EtcdAccess {
    pub fn is_empty(&self) -> bool {
        self == &EtcdAccess::default()
    }

    /// These settings, each replaced by `over`'s where it has one (the
    /// agent's own options over what a network recorded).
    pub fn overridden_by(&self, over: &EtcdAccess) -> EtcdAccess {
        EtcdAccess {
            ca: over.ca.clone().or_else(|| self.ca.clone()),
            cert: over.cert.clone().or_else(|| self.cert.clone()),
            key: over.key.clone().or_else(|| self.key.clone()),
            user: over.user.clone().or_else(|| self.user.clone()),
            password_file: over
                .password_file
                .clone()
                .or_else(|| self.password_file.clone()),
        }
    }

    /// Whether TLS settings are given (they need https:// endpoints).
    fn wants_tls(&self) -> Option<&'static str> {
        if self.ca.is_some() {
            Some("--etcd-ca")
        } else if self.cert.is_some() {
            Some("--etcd-cert")
        } else {
            None
        }
    }

    /// Checks the settings against each other and the endpoints: every
    /// endpoint http:// or https://, TLS files only with https://, a
    /// certificate with its key, a password file with its user.
    pub fn check(&self, endpoints: &[String]) -> Result<(), Rejection> {
        for e in endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Rejection::Unparsable {
                    what: "etcd endpoint",
                    value: e.clone(),
                    expected: "an etcd endpoint is http://HOST:PORT or https://HOST:PORT",
                });
            }
            if let (Some(option), true) = (self.wants_tls(), e.starts_with("http://")) {
                return Err(Rejection::TlsWithoutHttps {
                    option,
                    endpoint: e.clone(),
                });
            }
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(Rejection::MissingOption {
                option: "--etcd-key",
                reason: "a client certificate (--etcd-cert) goes with its private key",
            }),
            (None, Some(_)) => Err(Rejection::MissingOption {
                option: "--etcd-cert",
                reason: "a private key (--etcd-key) goes with its client certificate",
            }),
            _ if self.password_file.is_some() && self.user.is_none() => {
                Err(Rejection::MissingOption {
                    option: "--etcd-user",
                    reason:
                        "a password file (--etcd-password-file) is the password of an etcd user",
                })
            }
            _ => Ok(()),
        }
    }
}

/// `network create --driver overlay`: the definition asked for, and how
/// this host reaches etcd and its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRequest {
    pub etcd: Vec<String>,
    pub access: EtcdAccess,
    pub config: OverlayConfig,
    /// This host's underlay address; by default the one it reaches etcd from.
    pub underlay: Option<IpAddr>,
    pub lease_ttl: u64,
}

/// The options of an overlay request as a front end reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayOptions {
    pub etcd: Vec<String>,
    pub access: EtcdAccess,
    pub host_subnet_len: u8,
    /// None: derived from the network's name.
    pub vni: Option<u32>,
    pub port: u16,
    pub underlay: Option<IpAddr>,
    pub lease_ttl: u64,
}

impl OverlayOptions {
    /// Options with nsnet's defaults but the etcd endpoints.
    pub fn defaults(etcd: Vec<String>) -> OverlayOptions {
        OverlayOptions {
            etcd,
            access: EtcdAccess::default(),
            host_subnet_len: DEFAULT_HOST_SUBNET_LEN,
            vni: None,
            port: DEFAULT_PORT,
            underlay: None,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

impl OverlayRequest {
    /// Checks the parts of an overlay request that need no cluster: one
    /// IPv4 subnet, host subnets that fit it, a VNI of 24 bits.
    pub fn new(
        network: &str,
        subnets: &[IpNet],
        opts: OverlayOptions,
    ) -> Result<OverlayRequest, Rejection> {
        let OverlayOptions {
            etcd,
            access,
            host_subnet_len,
            vni,
            port,
            underlay,
            lease_ttl,
        } = opts;
        if etcd.is_empty() {
            return Err(Rejection::MissingOption {
                option: "--etcd",
                reason: "an overlay network lives in etcd (or set NSNET_ETCD)",
            });
        }
        access.check(&etcd)?;
        let subnet = match subnets {
            [IpNet::V4(s)] => *s,
            [other] => {
                return Err(Rejection::OverlayNeedsIpv4 {
                    what: "subnet",
                    value: other.to_string(),
                })
            }
            _ => {
                return Err(Rejection::MissingOption {
                    option: "--subnet",
                    reason: "an overlay network takes exactly one IPv4 cluster subnet, such as 10.200.0.0/16",
                })
            }
        };
        let vni = vni.unwrap_or_else(|| default_vni(network));
        if vni == 0 || vni > MAX_VNI {
            return Err(Rejection::OutOfRange {
                what: "VNI",
                value: vni.to_string(),
                expected: "a VNI is from 1 to 16777215",
            });
        }
        if lease_ttl == 0 {
            return Err(Rejection::OutOfRange {
                what: "lease TTL",
                value: "0".into(),
                expected: "a lease lasts at least 1 second",
            });
        }
        let config = OverlayConfig {
            subnet,
            host_subnet_len,
            vni,
            port,
        };
        if !config.valid_lengths() {
            return Err(Rejection::HostSubnetLength {
                subnet,
                length: host_subnet_len,
            });
        }
        Ok(OverlayRequest {
            etcd,
            access,
            config,
            underlay,
            lease_ttl,
        })
    }
}

/// VXLAN network identifiers have 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The VNI of a network when none is given: derived from its name, so
/// every host that joins by name alone agrees; above 4095 like Docker's.
pub fn default_vni(network: &str) -> u32 {
    4096 + super::names::stable_hash(&[network, "vni"]) % (MAX_VNI - 4096)
}

/// What a host records locally about its part of an overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    pub config: OverlayConfig,
    /// The etcd endpoints this host uses.
    pub etcd: Vec<String>,
    /// TLS files and user for them (no secrets).
    #[serde(default, skip_serializing_if = "EtcdAccess::is_empty")]
    pub access: EtcdAccess,
    /// This host's VTEP address and the interface that holds it.
    pub vtep: IpAddr,
    pub underlay: String,
    /// The VXLAN device and its MAC.
    pub vxlan: String,
    pub vtep_mac: String,
    pub lease_ttl: u64,
    /// Set by the agent when this host's subnet is claimed by another
    /// host (this host's claim lapsed meanwhile): the network is degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<SubnetConflict>,
}

/// Another host holds the subnet this host's bridge has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConflict {
    /// The VTEP of the host that holds it.
    pub holder: IpAddr,
    /// When the agent found it (seconds since the epoch).
    pub since: u64,
}

impl Overlay {
    /// Whether `other` is the same overlay to serve: the same settings,
    /// whatever the agent noted about conflicts.
    pub fn same_service(&self, other: &Overlay) -> bool {
        Overlay {
            conflict: None,
            ..self.clone()
        } == Overlay {
            conflict: None,
            ..other.clone()
        }
    }

    /// How long this host's subnet stays held after its claim lapsed.
    pub fn hold_ttl(&self) -> u64 {
        self.lease_ttl.saturating_mul(HOLD_TTLS)
    }

    pub fn reservation(&self) -> Reservation {
        Reservation {
            vtep: self.vtep,
            vtep_mac: self.vtep_mac.clone(),
        }
    }
}

impl OverlayConfig {
    /// Whether host subnets of this length fit the cluster subnet, with at
    /// least the network, the gateway, one namespace and broadcast each.
    pub fn valid_lengths(&self) -> bool {
        self.host_subnet_len >= self.subnet.prefix_len() && self.host_subnet_len <= 29
    }

    /// How many host subnets the cluster subnet holds.
    pub fn host_subnet_count(&self) -> u64 {
        1u64 << (self.host_subnet_len - self.subnet.prefix_len())
    }

    /// Host subnet number `i` (0-based).
    pub fn host_subnet(&self, i: u64) -> Option<Ipv4Net> {
        if i >= self.host_subnet_count() {
            return None;
        }
        let size = 1u64 << (32 - self.host_subnet_len);
        let base = u64::from(u32::from(self.subnet.network()));
        let addr = u32::try_from(base + i * size).ok()?;
        Ipv4Net::new(Ipv4Addr::from(addr), self.host_subnet_len).ok()
    }

    /// A free host subnet, starting the search at `start` (hosts that join
    /// at the same moment start at different places and rarely collide).
    pub fn free_host_subnet(&self, taken: &BTreeSet<Ipv4Net>, start: u64) -> Option<Ipv4Net> {
        let n = self.host_subnet_count();
        (0..n)
            .filter_map(|k| self.host_subnet((start + k) % n))
            .find(|s| !taken.contains(s))
    }
}

/// The name of the VXLAN device of a VNI.
/// What guards an overlay network's VXLAN port on this host: only its
/// peers' packets for its VNI reach its VTEP (`firewall::vxlan_guard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub vni: u32,
    pub port: u16,
    /// This host's VTEP address.
    pub vtep: IpAddr,
}

impl Overlay {
    /// This host's guard of the network.
    pub fn guard(&self) -> Guard {
        Guard {
            vni: self.config.vni,
            port: self.config.port,
            vtep: self.vtep,
        }
    }
}

pub fn vxlan_name(vni: u32) -> String {
    format!("nsv{vni}")
}

/// The gateway of a host subnet: its first host address, on the bridge.
pub fn host_gateway(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The network address of a host subnet, carried by the VXLAN device as a
/// /32 (the source of what the host itself sends to peers).
pub fn vxlan_address(subnet: &Ipv4Net) -> IpNet {
    IpNet::V4(Ipv4Net::new(subnet.network(), 32).expect("/32 is valid"))
}

/// The keys of one overlay network.
pub mod keys {
    use super::*;

    pub fn config(network: &str) -> String {
        format!("{KEY_PREFIX}networks/{network}/config")
    }

    pub fn vni(vni: u32) -> String {
        format!("{KEY_PREFIX}vnis/{vni}")
    }

    /// The prefix under which the hosts' claims of a network live.
    pub fn subnets(network: &str) -> String {
        format!("{KEY_PREFIX}networks/{network}/subnets/")
    }

    /// `…/subnets/10.200.3.0-24`, flannel's spelling (no slash in a key part).
    pub fn subnet(network: &str, subnet: &Ipv4Net) -> String {
        format!(
            "{}{}-{}",
            subnets(network),
            subnet.network(),
            subnet.prefix_len()
        )
    }

    /// The host subnet a claim key names.
    pub fn parse_subnet(network: &str, key: &str) -> Option<Ipv4Net> {
        parse_under(&subnets(network), key)
    }

    /// The prefix of the holds: a subnet's last host, on a lease that
    /// outlives its claim's (`HOLD_TTLS`). Not under `subnets/`: a hold is
    /// not a claim to anyone who reads claims.
    pub fn holds(network: &str) -> String {
        format!("{KEY_PREFIX}networks/{network}/held/")
    }

    pub fn hold(network: &str, subnet: &Ipv4Net) -> String {
        format!(
            "{}{}-{}",
            holds(network),
            subnet.network(),
            subnet.prefix_len()
        )
    }

    pub fn parse_hold(network: &str, key: &str) -> Option<Ipv4Net> {
        parse_under(&holds(network), key)
    }

    fn parse_under(prefix: &str, key: &str) -> Option<Ipv4Net> {
        let rest = key.strip_prefix(prefix)?;
        let (addr, len) = rest.split_once('-')?;
        Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_access_is_checked_against_the_endpoints() {
        let https = vec!["https://192.0.2.1:2379".to_string()];
        let http = vec!["http://192.0.2.1:2379".to_string()];
        let bare = vec!["192.0.2.1:2379".to_string()];
        let file = |p: &str| Some(PathBuf::from(p));
        let cases: Vec<(EtcdAccess, &[String], Option<&str>)> = vec![
            (EtcdAccess::default(), &http, None),
            (EtcdAccess::default(), &https, None),
            (
                EtcdAccess {
                    ca: file("/ca.pem"),
                    cert: file("/c.pem"),
                    key: file("/c.key"),
                    ..EtcdAccess::default()
                },
                &https,
                None,
            ),
            (
                EtcdAccess {
                    ca: file("/ca.pem"),
                    ..EtcdAccess::default()
                },
                &http,
                Some("--etcd-ca needs https:// etcd endpoints, but http://192.0.2.1:2379"),
            ),
            (
                EtcdAccess {
                    cert: file("/c.pem"),
                    ..EtcdAccess::default()
                },
                &https,
                Some("--etcd-key is needed"),
            ),
            (
                EtcdAccess {
                    key: file("/c.key"),
                    ..EtcdAccess::default()
                },
                &https,
                Some("--etcd-cert is needed"),
            ),
            (
                EtcdAccess {
                    password_file: file("/pw"),
                    ..EtcdAccess::default()
                },
                &http,
                Some("--etcd-user is needed"),
            ),
            (
                EtcdAccess {
                    user: Some("nsnet".into()),
                    ..EtcdAccess::default()
                },
                &http,
                None,
            ),
            (
                EtcdAccess::default(),
                &bare,
                Some("invalid etcd endpoint \"192.0.2.1:2379\""),
            ),
        ];
        for (access, endpoints, refused) in cases {
            let got = access.check(endpoints).err().map(|e| e.to_string());
            match (refused, got) {
                (None, None) => {}
                (Some(want), Some(got)) => assert!(got.starts_with(want), "{got}"),
                (want, got) => panic!("{access:?} on {endpoints:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_agents_access_settings_override_the_recorded_ones() {
        let recorded = EtcdAccess {
            ca: Some("/old-ca.pem".into()),
            user: Some("nsnet".into()),
            ..EtcdAccess::default()
        };
        let over = EtcdAccess {
            ca: Some("/new-ca.pem".into()),
            ..EtcdAccess::default()
        };
        let both = recorded.overridden_by(&over);
        assert_eq!(both.ca, Some("/new-ca.pem".into()));
        assert_eq!(both.user.as_deref(), Some("nsnet"));
        assert!(EtcdAccess::default().is_empty() && !both.is_empty());
    }

    fn config() -> OverlayConfig {
        OverlayConfig {
            subnet: "10.200.0.0/16".parse().unwrap(),
            host_subnet_len: 24,
            vni: 42,
            port: DEFAULT_PORT,
        }
    }

    #[test]
    fn host_subnets_cover_the_cluster_subnet() {
        let c = config();
        assert_eq!(c.host_subnet_count(), 256);
        assert_eq!(c.host_subnet(0).unwrap().to_string(), "10.200.0.0/24");
        assert_eq!(c.host_subnet(255).unwrap().to_string(), "10.200.255.0/24");
        assert_eq!(c.host_subnet(256), None);
    }

    #[test]
    fn a_free_subnet_skips_taken_ones_and_wraps() {
        let c = config();
        let taken: BTreeSet<Ipv4Net> = (0..256).filter_map(|i| c.host_subnet(i)).collect();
        assert_eq!(c.free_host_subnet(&taken, 7), None);
        let mut some = taken.clone();
        some.remove(&c.host_subnet(3).unwrap());
        assert_eq!(c.free_host_subnet(&some, 200), c.host_subnet(3));
    }

    #[test]
    fn keys_round_trip() {
        let s: Ipv4Net = "10.200.3.0/24".parse().unwrap();
        let k = keys::subnet("lab", &s);
        assert_eq!(k, "/nsnet/v1/networks/lab/subnets/10.200.3.0-24");
        assert_eq!(keys::parse_subnet("lab", &k), Some(s));
        assert_eq!(keys::parse_subnet("la", &k), None);
    }

    #[test]
    fn addresses_of_a_host_subnet() {
        let s: Ipv4Net = "10.200.3.0/24".parse().unwrap();
        assert_eq!(host_gateway(&s).to_string(), "10.200.3.1");
        assert_eq!(vxlan_address(&s).to_string(), "10.200.3.0/32");
        assert_eq!(vxlan_name(42), "nsv42");
    }
}

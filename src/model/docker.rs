//! What a Docker Engine tells nsnet as its network driver, as nsnet's
//! values: the network Docker made (its ID, the endpoints it created on
//! it), nsnet's network options under the names `-o KEY=VALUE` uses, and
//! the names nsnet derives from Docker's IDs. Pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ports::{PortMapping, Protocol};
use super::{CreateRequest, GatewayMode, Rejection};

/// A network Docker made: its ID, and the endpoints Docker created on it
/// (an endpoint holds its addresses from CreateEndpoint to DeleteEndpoint;
/// it has an attachment only while joined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerNetwork {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// An endpoint Docker created: the addresses and MAC its IPAM gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub addresses: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// An address pool Docker's IPAM asked nsnet for (`--ipam-driver nsnet`):
/// the range its own addresses come from (`--ip-range`), its gateway and
/// the addresses handed out, until Docker releases them. Its ID says its
/// CIDR and range (see `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub cidr: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub addresses: std::collections::BTreeSet<IpAddr>,
}

impl Pool {
    pub fn new(cidr: IpNet, range: Option<IpNet>) -> Pool {
        Pool {
            cidr,
            range,
            gateway: None,
            addresses: Default::default(),
        }
    }

    /// The ID Docker keeps for the pool: its CIDR, then its range when it
    /// has one (`10.5.0.0/24/10.5.0.128/25`, as Docker's own IPAM writes
    /// it), so that a pool nsnet's record lost is made again from its ID.
    pub fn id(&self) -> String {
        match self.range {
            Some(r) => format!("{}/{r}", self.cidr),
            None => self.cidr.to_string(),
        }
    }

    /// The CIDR and range a pool ID names (`id`'s inverse).
    pub fn parse_id(id: &str) -> Option<(IpNet, Option<IpNet>)> {
        let parts: Vec<&str> = id.split('/').collect();
        let net = |a: &[&str]| format!("{}/{}", a[0], a[1]).parse::<IpNet>().ok();
        match parts.len() {
            2 => Some((net(&parts)?, None)),
            4 => Some((net(&parts[..2])?, Some(net(&parts[2..])?))),
            _ => None,
        }
    }

    /// What nsnet's IPAM must not hand out on a network of this subnet.
    pub fn held(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.gateway.iter().chain(&self.addresses).copied()
    }
}

/// How many hex digits of an ID nsnet's names keep (as `docker ps`).
const SHORT: usize = 12;

/// The first 12 hex digits of a Docker ID, checked: IDs become interface
/// names.
pub fn short_id(id: &str) -> Result<&str, Rejection> {
    let hex = id.len() >= SHORT && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return Err(Rejection::Unparsable {
            what: "Docker ID",
            value: id.to_string(),
            expected: "expected at least 12 hexadecimal digits",
        });
    }
    Ok(&id[..SHORT])
}

/// The nsnet network (and bridge) of Docker network `id`: `dk-` and 12
/// hex digits, 15 bytes, an interface name.
pub fn network_name(id: &str) -> Result<String, Rejection> {
    Ok(format!("dk-{}", short_id(id)?))
}

/// The name of the veth end nsnet hands to Docker for endpoint `id`
/// (Docker renames it `ethN` in the container).
pub fn handed_ifname(id: &str) -> Result<String, Rejection> {
    Ok(format!("dkc{}", short_id(id)?))
}

/// nsnet's network options, as `-o KEY=VALUE` names them (the Docker
/// driver, and the netavark plugin's `--opt`): key, what the value is.
pub const OPTIONS: [(&str, &str); 23] = [
    ("gateway-mode", "nat, nat-unprotected, routed or isolated"),
    ("gateway-mode-v6", "the IPv6 gateway mode, when different"),
    (
        "icc",
        "true or false: namespaces of the network talk to each other",
    ),
    (
        "isolate",
        "true or false: other networks cannot reach this one",
    ),
    ("mtu", "the MTU of the bridge and its veths"),
    (
        "trusted-interface",
        "host interfaces exempt from direct-access protection, comma-separated",
    ),
    (
        "bridge",
        "the bridge's name (an existing bridge is adopted)",
    ),
    (
        "dns",
        "true or false: nsnet's DNS server answers on the gateway",
    ),
    ("driver", "bridge, overlay, macvlan or host-device"),
    ("parent", "macvlan: the host interface on the LAN"),
    (
        "macvlan_mode",
        "macvlan: bridge, private, vepa or passthru (Docker's name)",
    ),
    (
        "ip-range",
        "macvlan: the addresses handed out, within the subnet (comma-separated, one per family)",
    ),
    (
        "host-access",
        "macvlan: true or false: the host gets an interface on the network",
    ),
    (
        "probe-wait",
        "macvlan: milliseconds a probe for an address in use (ARP, IPv6 DAD) waits (0: none)",
    ),
    ("device", "host-device: the host interface moved in"),
    ("etcd", "overlay: etcd endpoints, comma-separated"),
    (
        "etcd-ca",
        "overlay: PEM file of the CAs that sign etcd's certificates",
    ),
    (
        "etcd-cert",
        "overlay: PEM client certificate presented to etcd",
    ),
    ("etcd-key", "overlay: the client certificate's private key"),
    ("etcd-user", "overlay: etcd user"),
    (
        "etcd-password-file",
        "overlay: file holding the etcd user's password (else NSNET_ETCD_PASSWORD)",
    ),
    ("vni", "overlay: the VXLAN network identifier"),
    (
        "name",
        "overlay: its name in etcd, the same on every host (default: from the subnet)",
    ),
];

/// Docker's own name for the MTU option, taken as `mtu`.
const DOCKER_MTU: &str = "com.docker.network.driver.mtu";

/// A bool the way `-o` writes it.
fn boolean(key: &str, value: &str) -> Result<bool, Rejection> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad_option(key, value, "expected true or false")),
    }
}

fn bad_option(key: &str, value: &str, expected: &'static str) -> Rejection {
    Rejection::Unparsable {
        what: "option",
        value: format!("{key}={value}"),
        expected,
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Rejection> {
    value
        .parse()
        .map_err(|_| bad_option(key, value, "expected a number"))
}

/// Options of an overlay network, before the front end reaches etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayAsked {
    pub etcd: Vec<String>,
    pub access: super::overlay::EtcdAccess,
    pub vni: Option<u32>,
    pub name: Option<String>,
}

impl OverlayAsked {
    /// The overlay request of network `name` with cluster subnet(s)
    /// `subnets`, nsnet's defaults for what was not asked.
    pub fn request(
        self,
        name: &str,
        subnets: &[IpNet],
    ) -> Result<super::overlay::OverlayRequest, Rejection> {
        let opts = super::overlay::OverlayOptions {
            vni: self.vni,
            access: self.access,
            ..super::overlay::OverlayOptions::defaults(self.etcd)
        };
        super::overlay::OverlayRequest::new(name, subnets, opts)
    }
}

/// Applies `-o` options to `req`; returns what an overlay network needs
/// besides (`Some` when `driver=overlay`). Unknown options are refused,
/// all of them named.
pub fn apply_options(
    req: &mut CreateRequest,
    options: &BTreeMap<String, String>,
) -> Result<Option<OverlayAsked>, Rejection> {
    let unknown: Vec<&str> = options
        .keys()
        .map(String::as_str)
        .filter(|k| *k != DOCKER_MTU && !OPTIONS.iter().any(|(name, _)| name == k))
        .collect();
    if !unknown.is_empty() {
        return Err(Rejection::UnknownOptions {
            options: unknown.iter().map(|k| k.to_string()).collect(),
            known: OPTIONS.iter().map(|(k, _)| *k).collect(),
        });
    }
    let mut overlay = OverlayAsked::default();
    let mut is_overlay = false;
    let mut lan = LanAsked::default();
    for (key, value) in options {
        let v = value.as_str();
        match key.as_str() {
            "parent" | "macvlan_mode" | "ip-range" | "host-access" | "probe-wait" | "device" => {
                lan.set(key, v)?
            }
            "gateway-mode" => req.gateway_mode = mode(key, v)?,
            "gateway-mode-v6" => req.gateway_mode_v6 = Some(mode(key, v)?),
            "icc" => req.icc = boolean(key, v)?,
            "isolate" => req.isolate = boolean(key, v)?,
            "mtu" | DOCKER_MTU => req.mtu = Some(number(key, v)?),
            "trusted-interface" => {
                req.trusted_interfaces = v.split(',').map(str::to_string).collect()
            }
            "bridge" => req.bridge = Some(v.to_string()),
            "dns" => req.dns = boolean(key, v)?,
            "driver" => match v {
                "bridge" => is_overlay = false,
                "overlay" => is_overlay = true,
                "macvlan" | "host-device" => lan.driver = Some(v.to_string()),
                _ => {
                    return Err(bad_option(
                        key,
                        v,
                        "expected bridge, overlay, macvlan or host-device",
                    ))
                }
            },
            "etcd" => overlay.etcd = v.split(',').map(str::to_string).collect(),
            "etcd-ca" => overlay.access.ca = Some(v.into()),
            "etcd-cert" => overlay.access.cert = Some(v.into()),
            "etcd-key" => overlay.access.key = Some(v.into()),
            "etcd-user" => overlay.access.user = Some(v.to_string()),
            "etcd-password-file" => overlay.access.password_file = Some(v.into()),
            "vni" => overlay.vni = Some(number(key, v)?),
            "name" => overlay.name = Some(v.to_string()),
            _ => unreachable!("unknown options were refused above"),
        }
    }
    if !is_overlay && overlay != OverlayAsked::default() {
        return Err(Rejection::MissingOption {
            option: "driver=overlay",
            reason: "etcd, etcd-*, vni and name are options of overlay networks",
        });
    }
    req.lan = lan.request()?;
    Ok(is_overlay.then_some(overlay))
}

/// The LAN options of `-o`, gathered before the driver is known.
#[derive(Debug, Default)]
struct LanAsked {
    driver: Option<String>,
    parent: Option<String>,
    mode: crate::model::lan::MacvlanMode,
    ip_ranges: Vec<IpNet>,
    host_access: bool,
    probe_ms: Option<u32>,
    device: Option<String>,
    /// A LAN option was given (refused when the driver is not one).
    given: bool,
}

impl LanAsked {
    fn set(&mut self, key: &str, v: &str) -> Result<(), Rejection> {
        self.given = true;
        match key {
            "parent" => self.parent = Some(v.to_string()),
            "macvlan_mode" => self.mode = v.parse()?,
            "ip-range" => {
                self.ip_ranges = v
                    .split(',')
                    .map(crate::model::rejection::parse_subnet)
                    .collect::<Result<_, _>>()?
            }
            "host-access" => self.host_access = boolean(key, v)?,
            "probe-wait" => self.probe_ms = Some(number(key, v)?),
            _ => self.device = Some(v.to_string()),
        }
        Ok(())
    }

    fn request(self) -> Result<Option<crate::model::lan::LanRequest>, Rejection> {
        use crate::model::lan::{LanRequest, DEFAULT_PROBE_MS};
        let missing = |option, reason| Rejection::MissingOption { option, reason };
        match self.driver.as_deref() {
            Some("macvlan") => Ok(Some(LanRequest::Macvlan {
                parent: self.parent.ok_or(missing(
                    "parent",
                    "a macvlan network is on a host interface on the LAN",
                ))?,
                mode: self.mode,
                ip_ranges: self.ip_ranges,
                host_access: self.host_access,
                probe_ms: self.probe_ms.unwrap_or(DEFAULT_PROBE_MS),
            })),
            Some(_) => Ok(Some(LanRequest::HostDevice {
                device: self.device.ok_or(missing(
                    "device",
                    "a host-device network moves that host interface in",
                ))?,
            })),
            None if !self.given => Ok(None),
            None => Err(missing(
                "driver=macvlan",
                "parent, macvlan_mode, ip-range, host-access, probe-wait and device are options of networks on the LAN",
            )),
        }
    }
}

fn mode(key: &str, value: &str) -> Result<GatewayMode, Rejection> {
    value.parse().map_err(|_| {
        bad_option(
            key,
            value,
            "expected nat, nat-unprotected, routed or isolated",
        )
    })
}

/// The name of an overlay network Docker makes, the same on every host:
/// asked, or from its cluster subnet (`docker-10.200.0.0-16`). Docker
/// tells a driver no network name.
pub fn overlay_name(asked: Option<&str>, subnet: &IpNet) -> String {
    match asked {
        Some(n) => n.to_string(),
        None => format!("docker-{}-{}", subnet.addr(), subnet.prefix_len()),
    }
}

/// One entry of Docker's `com.docker.network.portmap`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPort {
    /// IANA protocol number: 6 TCP, 17 UDP, 132 SCTP.
    pub proto: u8,
    #[serde(default)]
    pub port: u16,
    #[serde(rename = "HostIP", default)]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: u16,
    #[serde(default)]
    pub host_port_end: u16,
}

/// Docker's port map as nsnet's mappings. A host port of 0 (`-p 80`)
/// lets nsnet pick one.
pub fn port_mappings(ports: &[DockerPort]) -> Result<Vec<PortMapping>, Rejection> {
    ports.iter().map(port_mapping).collect()
}

fn port_mapping(p: &DockerPort) -> Result<PortMapping, Rejection> {
    let protocol = match p.proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        n => {
            return Err(Rejection::Unparsable {
                what: "port protocol",
                value: n.to_string(),
                expected: "expected 6 (tcp), 17 (udp) or 132 (sctp)",
            })
        }
    };
    let host_ip = match p.host_ip.as_str() {
        "" => None,
        ip => Some(super::rejection::parse_ip(ip, "host address")?),
    };
    // Docker sends one entry per container port; a host range for it
    // (`-p 8000-8010:80`) means "one port of the range": nsnet takes the
    // first.
    Ok(PortMapping {
        host_ip,
        host_port: p.host_port,
        port: p.port,
        count: 1,
        protocol,
    })
}

/// An address Docker's IPAM gave (`10.0.0.2/24`), or none when empty.
pub fn endpoint_address(value: &str) -> Result<Option<IpNet>, Rejection> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| Rejection::Unparsable {
        what: "endpoint address",
        value: value.to_string(),
        expected: "expected an address with its prefix, such as 10.0.0.2/24",
    })
}

/// The gateway addresses of a network, from Docker's IPAM data
/// (`10.0.0.1/24`).
pub fn gateway_address(value: &str) -> Result<Option<IpAddr>, Rejection> {
    Ok(endpoint_address(value)?.map(|n| n.addr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_set_the_request() {
        let mut req = CreateRequest::named("dk-0123456789ab");
        let overlay = apply_options(
            &mut req,
            &opts(&[
                ("gateway-mode", "routed"),
                ("icc", "false"),
                ("isolate", "0"),
                ("com.docker.network.driver.mtu", "1400"),
                ("trusted-interface", "eth1,eth2"),
                ("dns", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(overlay, None);
        assert_eq!(req.gateway_mode, GatewayMode::Routed);
        assert!(!req.icc && !req.isolate && !req.dns);
        assert_eq!(req.mtu, Some(1400));
        assert_eq!(req.trusted_interfaces, ["eth1", "eth2"]);
    }

    #[test]
    fn bad_options_are_named() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[("colour", "red"), ("size", "1")],
                "unknown options colour, size",
            ),
            (&[("icc", "maybe")], "icc=maybe"),
            (&[("mtu", "big")], "mtu=big"),
            (&[("gateway-mode", "open")], "gateway-mode=open"),
            (&[("etcd", "http://192.0.2.1:2379")], "driver=overlay"),
        ];
        for (given, says) in cases {
            let mut req = CreateRequest::named("n");
            let e = apply_options(&mut req, &opts(given)).unwrap_err();
            assert!(e.to_string().contains(says), "{given:?}: {e}");
        }
    }

    #[test]
    fn overlay_options_come_back() {
        let mut req = CreateRequest::named("n");
        let o = apply_options(
            &mut req,
            &opts(&[
                ("driver", "overlay"),
                ("etcd", "http://192.0.2.1:2379"),
                ("vni", "7"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.etcd, ["http://192.0.2.1:2379"]);
        assert_eq!(o.vni, Some(7));
    }

    #[test]
    fn etcd_tls_and_user_options_reach_the_overlay_request() {
        let mut req = CreateRequest::named("n");
        let o = apply_options(
            &mut req,
            &opts(&[
                ("driver", "overlay"),
                ("etcd", "https://192.0.2.1:2379"),
                ("etcd-ca", "/etc/nsnet/ca.pem"),
                ("etcd-cert", "/etc/nsnet/host.pem"),
                ("etcd-key", "/etc/nsnet/host.key"),
                ("etcd-user", "nsnet"),
                ("etcd-password-file", "/etc/nsnet/pw"),
            ]),
        )
        .unwrap()
        .unwrap();
        let subnets = ["10.200.0.0/16".parse().unwrap()];
        let r = o.request("n", &subnets).unwrap();
        assert_eq!(r.access.ca, Some("/etc/nsnet/ca.pem".into()));
        assert_eq!(r.access.key, Some("/etc/nsnet/host.key".into()));
        assert_eq!(r.access.user.as_deref(), Some("nsnet"));
        assert_eq!(r.access.password_file, Some("/etc/nsnet/pw".into()));
        // A CA with plain HTTP is refused, naming both.
        let mut req = CreateRequest::named("n");
        let o = apply_options(
            &mut req,
            &opts(&[
                ("driver", "overlay"),
                ("etcd", "http://192.0.2.1:2379"),
                ("etcd-ca", "/etc/nsnet/ca.pem"),
            ]),
        )
        .unwrap()
        .unwrap();
        let e = o.request("n", &subnets).unwrap_err().to_string();
        assert!(e.contains("--etcd-ca needs https://"), "{e}");
    }

    #[test]
    fn names_come_from_ids() {
        let id = "b633ea1b9a6f00112233445566778899aabbccddeeff00112233445566778899";
        assert_eq!(network_name(id).unwrap(), "dk-b633ea1b9a6f");
        assert_eq!(handed_ifname(id).unwrap(), "dkcb633ea1b9a6f");
        assert!(network_name("../etc").is_err());
        assert!(network_name("abc").is_err());
    }

    #[test]
    fn port_maps_become_mappings() {
        let json = r#"[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
                      {"Proto":17,"IP":"","Port":53,"HostIP":"127.0.0.1","HostPort":5353,"HostPortEnd":5353}]"#;
        let ports: Vec<DockerPort> = serde_json::from_str(json).unwrap();
        let m = port_mappings(&ports).unwrap();
        assert_eq!(m[0].to_string(), "8080:80/tcp");
        assert_eq!(m[1].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m[1].protocol, Protocol::Udp);
        let bad: Vec<DockerPort> = serde_json::from_str(r#"[{"Proto":1,"Port":1}]"#).unwrap();
        assert!(port_mappings(&bad).is_err());
    }
}

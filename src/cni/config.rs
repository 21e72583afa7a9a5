//! The network configuration a runtime passes on stdin: the reference
//! `bridge` plugin's keys, nsnet's own, and the runtime's capabilities.

use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

use super::{CniError, Env, SUPPORTED};
use crate::model::ports::PortMapping;
use crate::model::rejection::{parse_ip, parse_subnet};
use crate::model::CniKey;
use crate::model::{CreateRequest, RequestedIp};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Range {
    subnet: String,
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ipam {
    #[serde(rename = "type", default)]
    kind: String,
    /// host-local style: sets of ranges.
    #[serde(default)]
    ranges: Vec<Vec<Range>>,
    /// The older single-range form.
    subnet: Option<String>,
    gateway: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortMappingConf {
    host_port: u32,
    container_port: u32,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(rename = "hostIP", default)]
    host_ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMappingConf>,
    #[serde(default)]
    ips: Vec<String>,
    mac: Option<String>,
    /// The `aliases` capability (podman): names by network.
    #[serde(default)]
    aliases: std::collections::BTreeMap<String, Vec<String>>,
}

/// The configuration; unknown keys (other plugins' options, `args`,
/// `capabilities`) are ignored, as the spec asks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub bridge: Option<String>,
    /// Accepted for compatibility: nsnet always puts the gateway on the
    /// bridge and routes through it.
    #[allow(dead_code)]
    is_gateway: Option<bool>,
    /// Accepted: nsnet always adds the default route (unless internal).
    #[allow(dead_code)]
    is_default_gateway: Option<bool>,
    ip_masq: Option<bool>,
    mtu: Option<u32>,
    /// Accepted: nsnet turns hairpin on for ports that publish.
    #[allow(dead_code)]
    hairpin_mode: Option<bool>,
    #[serde(default)]
    ipam: Option<Ipam>,
    // nsnet's own keys.
    #[serde(default)]
    subnets: Vec<String>,
    internal: Option<bool>,
    isolate: Option<bool>,
    gateway_mode: Option<String>,
    icc: Option<bool>,
    #[serde(default)]
    trusted_interfaces: Vec<String>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    pub prev_result: Option<Value>,
    #[serde(default)]
    pub dns: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Vec<Value>,
    /// An overlay network across nodes (nsnet's key): the subnet is the
    /// cluster's, each node allocates from its own host subnet.
    #[serde(default)]
    overlay: Option<OverlayConf>,
    /// The CNI macvlan plugin's keys: the host interface on the LAN, and
    /// the mode; nsnet's own beside them.
    master: Option<String>,
    mode: Option<String>,
    #[serde(default)]
    ip_ranges: Vec<String>,
    #[serde(default)]
    host_access: bool,
    probe_wait: Option<u32>,
    /// The CNI host-device plugin's key: the host interface moved in.
    device: Option<String>,
}

/// `"overlay": {"etcd": [...], "hostSubnetLen": 24, "vni": N, "vxlanPort":
/// 4789, "leaseTtl": 20, "etcdCa": FILE, "etcdCert": FILE, "etcdKey": FILE,
/// "etcdUser": NAME, "etcdPasswordFile": FILE}`: what `nsnet network create
/// --driver overlay` takes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OverlayConf {
    etcd: Vec<String>,
    etcd_ca: Option<std::path::PathBuf>,
    etcd_cert: Option<std::path::PathBuf>,
    etcd_key: Option<std::path::PathBuf>,
    etcd_user: Option<String>,
    etcd_password_file: Option<std::path::PathBuf>,
    host_subnet_len: Option<u8>,
    vni: Option<u32>,
    vxlan_port: Option<u16>,
    lease_ttl: Option<u64>,
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(6, "cannot decode the network configuration").with(e.to_string())
        })?;
        if !SUPPORTED.contains(&conf.cni_version.as_str()) {
            return Err(
                CniError::new(1, format!("unsupported cniVersion {:?}", conf.cni_version))
                    .with(format!("nsnet supports {}", SUPPORTED.join(", "))),
            );
        }
        crate::model::names::validate_network_name(&conf.name)
            .map_err(|e| CniError::new(7, "invalid network name").with(e.to_string()))?;
        Ok(conf)
    }

    /// The IPAM plugin to run instead of nsnet's own, if any.
    pub fn delegated_ipam(&self) -> Option<&str> {
        match self.ipam.as_ref().map(|i| i.kind.as_str()) {
            None | Some("") | Some("nsnet") => None,
            Some(other) => Some(other),
        }
    }

    /// `gatewayMode`, or what `ipMasq` means: the reference plugin
    /// masquerades only with ipMasq, and without it nsnet routes (with the
    /// inbound filter of `routed`).
    fn gateway_mode(&self) -> Result<crate::model::GatewayMode, CniError> {
        match (&self.gateway_mode, self.ip_masq) {
            (Some(m), _) => m
                .parse()
                .map_err(|e: String| CniError::new(7, "invalid gatewayMode").with(e)),
            (None, Some(true)) => Ok(crate::model::GatewayMode::Nat),
            (None, _) => Ok(crate::model::GatewayMode::Routed),
        }
    }

    /// The nsnet network this configuration describes.
    pub fn network_request(&self) -> Result<CreateRequest, CniError> {
        let mut subnets = self.subnets.clone();
        let mut gateways = Vec::new();
        if let Some(ipam) = &self.ipam {
            for set in &ipam.ranges {
                for r in set {
                    subnets.push(r.subnet.clone());
                    gateways.extend(r.gateway.clone());
                }
            }
            subnets.extend(ipam.subnet.clone());
            gateways.extend(ipam.gateway.clone());
        }
        subnets.dedup();
        if subnets.is_empty() {
            return Err(CniError::new(7, "no subnet").with(
                "set \"subnets\", or \"ipam\": {\"ranges\": [[{\"subnet\": ...}]]}, in the network configuration",
            ));
        }
        let invalid = |e: crate::model::Rejection| {
            CniError::new(7, "invalid network configuration").with(e.to_string())
        };
        let lan = self.lan().map_err(invalid)?;
        let req = CreateRequest {
            subnets: subnets
                .iter()
                .map(|s| parse_subnet(s))
                .collect::<Result<_, _>>()
                .map_err(invalid)?,
            gateways: gateways
                .iter()
                .map(|g| parse_ip(g, "gateway"))
                .collect::<Result<_, _>>()
                .map_err(invalid)?,
            bridge: match lan {
                Some(_) => self.bridge.clone(),
                None => Some(self.bridge.clone().unwrap_or_else(|| "cni0".into())),
            },
            internal: self.internal.unwrap_or(false),
            gateway_mode: match lan {
                // The LAN's router routes: there is no mode to pick.
                Some(_) => crate::model::GatewayMode::Nat,
                None => self.gateway_mode()?,
            },
            gateway_mode_v6: None,
            icc: self.icc.unwrap_or(true),
            trusted_interfaces: self.trusted_interfaces.clone(),
            isolate: self.isolate.unwrap_or(true),
            mtu: self.mtu,
            dns: self.nsnet_dns(),
            lan,
            ..CreateRequest::named(&self.name)
        };
        self.with_overlay(req).map_err(invalid)
    }

    /// A network on the LAN: `"master"` (macvlan, with `"mode"`,
    /// `"ipRanges"`, `"hostAccess"`, `"probeWait"`) or `"device"`
    /// (host-device), as the CNI plugins of those names take them.
    fn lan(&self) -> Result<Option<crate::model::lan::LanRequest>, crate::model::Rejection> {
        use crate::model::lan::{LanRequest, DEFAULT_PROBE_MS};
        Ok(match (&self.master, &self.device) {
            (Some(_), Some(_)) => {
                return Err(crate::model::Rejection::NotForDriver {
                    option: "device",
                    driver: "macvlan (\"master\")",
                })
            }
            (Some(parent), None) => Some(LanRequest::Macvlan {
                parent: parent.clone(),
                mode: self.mode.as_deref().unwrap_or("bridge").parse()?,
                ip_ranges: self
                    .ip_ranges
                    .iter()
                    .map(|r| parse_subnet(r))
                    .collect::<Result<_, _>>()?,
                host_access: self.host_access,
                probe_ms: self.probe_wait.unwrap_or(DEFAULT_PROBE_MS),
            }),
            (None, Some(device)) => Some(LanRequest::HostDevice {
                device: device.clone(),
            }),
            (None, None) => None,
        })
    }

    /// `req` as an overlay network when the configuration names one: its
    /// subnet is the cluster's, its gateways are each node's.
    fn with_overlay(
        &self,
        mut req: CreateRequest,
    ) -> Result<CreateRequest, crate::model::Rejection> {
        use crate::model::overlay::{EtcdAccess, OverlayOptions, OverlayRequest};
        let Some(o) = &self.overlay else {
            return Ok(req);
        };
        let d = OverlayOptions::defaults(o.etcd.clone());
        let opts = OverlayOptions {
            host_subnet_len: o.host_subnet_len.unwrap_or(d.host_subnet_len),
            vni: o.vni,
            port: o.vxlan_port.unwrap_or(d.port),
            lease_ttl: o.lease_ttl.unwrap_or(d.lease_ttl),
            access: EtcdAccess {
                ca: o.etcd_ca.clone(),
                cert: o.etcd_cert.clone(),
                key: o.etcd_key.clone(),
                user: o.etcd_user.clone(),
                password_file: o.etcd_password_file.clone(),
            },
            ..d
        };
        req.overlay = Some(OverlayRequest::new(&req.name, &req.subnets, opts)?);
        req.gateways.clear();
        Ok(req)
    }

    /// Whether nsnet's DNS serves the network: `"dns": false` turns it off;
    /// a DNS object (the CNI spec's, which the runtime may pass) leaves it
    /// on and is passed through in results.
    pub fn nsnet_dns(&self) -> bool {
        !matches!(self.dns, Some(Value::Bool(false)))
    }

    /// `runtimeConfig.ips`, as text.
    pub fn runtime_ips(&self) -> &[String] {
        &self.runtime_config.ips
    }

    /// The names a runtime gives the container on this network
    /// (`runtimeConfig.aliases`).
    pub fn runtime_aliases(&self) -> &[String] {
        self.runtime_config
            .aliases
            .get(&self.name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn runtime_mac(&self) -> Option<String> {
        self.runtime_config.mac.clone()
    }

    /// `portMappings`, parsed by the same parser as `--publish`.
    pub fn port_mappings(&self) -> Result<Vec<PortMapping>, CniError> {
        self.port_specs()
            .iter()
            .map(|spec| {
                spec.parse::<PortMapping>()
                    .map_err(|e| CniError::new(7, "invalid portMappings").with(e.to_string()))
            })
            .collect()
    }

    fn port_specs(&self) -> Vec<String> {
        self.runtime_config
            .port_mappings
            .iter()
            .map(|p| {
                let host = match p.host_ip.as_deref() {
                    None | Some("") => String::new(),
                    Some(ip) if ip.contains(':') => format!("[{ip}]:"),
                    Some(ip) => format!("{ip}:"),
                };
                format!(
                    "{host}{}:{}/{}",
                    p.host_port,
                    p.container_port,
                    p.protocol.as_deref().unwrap_or("tcp")
                )
            })
            .collect()
    }

    pub fn valid_attachments(&self) -> Vec<CniKey> {
        self.valid_attachments
            .iter()
            .filter_map(|v| {
                Some(CniKey {
                    container_id: v["containerID"].as_str()?.to_string(),
                    ifname: v["ifname"].as_str()?.to_string(),
                })
            })
            .collect()
    }
}

/// Runs an IPAM plugin found in `CNI_PATH`, as the reference bridge does:
/// the same environment with `CNI_COMMAND` set, the same stdin; its
/// result (ADD) or nothing (DEL).
pub fn delegate(
    kind: &str,
    command: &str,
    env: &Env,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    if kind.contains('/') {
        return Err(CniError::new(7, format!("invalid IPAM type {kind:?}")));
    }
    let binary = env
        .path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(7, format!("IPAM plugin {kind:?} not found in CNI_PATH"))
                .with(env.path.clone())
        })?;
    let input = crate::api::memory_file(stdin).map_err(|e| {
        CniError::new(5, format!("writing to IPAM plugin {kind}")).with(e.to_string())
    })?;
    let child = Command::new(&binary)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CniError::new(5, format!("running IPAM plugin {kind}")).with(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(5, format!("running IPAM plugin {kind}")).with(e.to_string()))?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let msg = parsed
            .as_ref()
            .and_then(|v| v["msg"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("IPAM plugin {kind} failed"));
        return Err(CniError::new(
            parsed
                .as_ref()
                .and_then(|v| v["code"].as_u64())
                .unwrap_or(100) as u32,
            msg,
        ));
    }
    Ok(parsed)
}

/// Addresses as a runtime gives them (`CNI_ARGS IP=`, `runtimeConfig.ips`
/// or a delegated IPAM result), each once: podman sends them twice on
/// `network reload`.
pub fn requested_ips<'a>(
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<RequestedIp>, CniError> {
    let mut out: Vec<RequestedIp> = Vec::new();
    for t in texts {
        let ip: RequestedIp = t.parse().map_err(|e: crate::model::Rejection| {
            CniError::new(7, "invalid address").with(e.to_string())
        })?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// The `cniVersion` of a configuration, if it has one (also for input
/// that is otherwise not a valid configuration).
pub fn cni_version(stdin: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GatewayMode;

    fn conf(extra: &str) -> NetConf {
        let text = format!(
            r#"{{"cniVersion": "1.0.0", "name": "podnet", "type": "nsnet", "subnets": ["10.66.0.0/24"]{extra}}}"#
        );
        NetConf::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn an_overlay_takes_etcd_tls_files_and_a_user() {
        let req = conf(
            r#", "overlay": {"etcd": ["https://192.0.2.1:2379"], "etcdCa": "/ca.pem",
                "etcdCert": "/host.pem", "etcdKey": "/host.key", "etcdUser": "nsnet",
                "etcdPasswordFile": "/pw"}"#,
        )
        .network_request()
        .unwrap();
        let access = req.overlay.unwrap().access;
        assert_eq!(access.cert, Some("/host.pem".into()));
        assert_eq!(access.user.as_deref(), Some("nsnet"));
        let e = NetConf::parse(
            br#"{"cniVersion": "1.0.0", "name": "p", "type": "nsnet", "subnets": ["10.66.0.0/16"],
                "overlay": {"etcd": ["https://192.0.2.1:2379"], "etcdCert": "/host.pem"}}"#,
        )
        .unwrap()
        .network_request()
        .unwrap_err();
        assert!(e.details.contains("--etcd-key is needed"), "{e:?}");
    }

    #[test]
    fn dns_false_turns_nsnet_dns_off_and_a_dns_object_keeps_it() {
        assert!(conf("").network_request().unwrap().dns);
        assert!(!conf(r#", "dns": false"#).network_request().unwrap().dns);
        let c = conf(r#", "dns": {"nameservers": ["192.0.2.53"]}"#);
        assert!(c.network_request().unwrap().dns);
    }

    #[test]
    fn gateway_mode_icc_and_trusted_interfaces_are_read() {
        let req = conf(r#", "ipMasq": true"#).network_request().unwrap();
        assert_eq!((req.gateway_mode, req.icc), (GatewayMode::Nat, true));
        // The reference plugin masquerades only with ipMasq: without it,
        // nsnet routes, with the inbound filter.
        let req = conf("").network_request().unwrap();
        assert_eq!(req.gateway_mode, GatewayMode::Routed);
        let req = conf(
            r#", "gatewayMode": "nat-unprotected", "icc": false, "trustedInterfaces": ["eth1"]"#,
        )
        .network_request()
        .unwrap();
        assert_eq!(
            (req.gateway_mode, req.icc, req.trusted_interfaces),
            (GatewayMode::NatUnprotected, false, vec!["eth1".to_string()])
        );
        let e = conf(r#", "gatewayMode": "bridge""#)
            .network_request()
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.details.contains("bridge"), "{}", e.details);
    }
}

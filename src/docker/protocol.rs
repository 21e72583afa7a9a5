//! Docker's legacy (v1) remote network driver protocol: the request and
//! reply bodies, and the dispatch of a call to a `Backend`. No I/O: the
//! server (`super::serve`) carries bytes, the backend (nsnet's `api`, or a
//! test's fake) does the work.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::docker::{self, DockerPort};
use crate::model::ports::PortMapping;
use crate::model::{Attachment, CreateRequest, Network};

/// What the driver does for Docker: nsnet's `api`, behind a seam so that
/// the protocol is tested without root.
pub trait Backend {
    /// `call` is Docker's request as it came, for the driver to keep: Docker
    /// never sends it again.
    fn create_network(&self, req: &CreateRequest, call: &[u8]) -> Result<Network, String>;
    fn delete_network(&self, id: &str) -> Result<(), String>;
    fn create_endpoint(
        &self,
        id: &str,
        endpoint: &str,
        addresses: &[IpNet],
        mac: Option<String>,
    ) -> Result<(), String>;
    fn delete_endpoint(&self, id: &str, endpoint: &str) -> Result<(), String>;
    /// The attachment made, and its network after the change.
    fn join(
        &self,
        id: &str,
        endpoint: &str,
        sandbox: PathBuf,
    ) -> Result<(Attachment, Network), String>;
    fn leave(&self, id: &str, endpoint: &str) -> Result<(), String>;
    fn publish(&self, id: &str, endpoint: &str, ports: &[PortMapping]) -> Result<(), String>;
    fn unpublish(&self, id: &str, endpoint: &str) -> Result<(), String>;
    /// A pool: `asked` or a free subnet, its own addresses from `range`
    /// (`--ip-range`).
    fn request_pool(
        &self,
        asked: Option<IpNet>,
        range: Option<IpNet>,
        v6: bool,
    ) -> Result<IpNet, String>;
    fn release_pool(&self, id: &str) -> Result<(), String>;
    fn request_address(
        &self,
        id: &str,
        asked: Option<IpAddr>,
        gateway: bool,
    ) -> Result<IpNet, String>;
    fn release_address(&self, id: &str, addr: IpAddr) -> Result<(), String>;
}

/// The media type of every reply.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// A reply: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkCall {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
}

#[derive(Deserialize, Default)]
struct IpamData {
    #[serde(rename = "AddressSpace", default)]
    address_space: String,
    #[serde(rename = "Pool", default)]
    pool: String,
    #[serde(rename = "Gateway", default)]
    gateway: String,
}

#[derive(Deserialize)]
struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "Options", default)]
    options: Options,
    #[serde(rename = "IPv4Data", default)]
    ipv4: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data", default)]
    ipv6: Option<Vec<IpamData>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Interface {
    address: String,
    #[serde(rename = "AddressIPv6")]
    address_ipv6: String,
    mac_address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(default)]
    interface: Option<Interface>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Join {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    sandbox_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Program {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(default)]
    options: Options,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestPool {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    sub_pool: String,
    #[serde(rename = "V6", default)]
    v6: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PoolCall {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    options: Options,
}

/// RequestAddress's option saying the address is the network's gateway.
const ADDRESS_TYPE: &str = "RequestAddressType";
const GATEWAY_TYPE: &str = "com.docker.network.gateway";

/// A call's `Options`: a map, which Docker may send as `null`.
#[derive(Deserialize, Default)]
#[serde(transparent)]
struct Options(Option<BTreeMap<String, Value>>);

impl Options {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.as_ref().and_then(|m| m.get(key))
    }
}

const GENERIC: &str = "com.docker.network.generic";
const INTERNAL: &str = "com.docker.network.internal";
const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
const PORTMAP: &str = "com.docker.network.portmap";

/// Answers one call: `path` as Docker sends it (`/NetworkDriver.Join`),
/// `body` its JSON.
pub fn handle(path: &str, body: &[u8], backend: &dyn Backend) -> Reply {
    let call = path.trim_start_matches('/');
    if let Some(method) = call.strip_prefix("IpamDriver.") {
        return ipam(method, body, backend);
    }
    let result = match call {
        "Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
        "NetworkDriver.GetCapabilities" => {
            Ok(json!({ "Scope": "local", "ConnectivityScope": "local" }))
        }
        "NetworkDriver.CreateNetwork" => parse(body).and_then(|c| create_network(c, body, backend)),
        "NetworkDriver.DeleteNetwork" => parse(body)
            .and_then(|c: NetworkCall| backend.delete_network(&c.network_id))
            .map(|()| json!({})),
        "NetworkDriver.CreateEndpoint" => parse(body).and_then(|c| create_endpoint(c, backend)),
        "NetworkDriver.DeleteEndpoint" => parse(body)
            .and_then(|c: NetworkCall| backend.delete_endpoint(&c.network_id, &c.endpoint_id))
            .map(|()| json!({})),
        "NetworkDriver.EndpointOperInfo" => Ok(json!({ "Value": {} })),
        "NetworkDriver.Join" => parse(body).and_then(|c| join(c, backend)),
        "NetworkDriver.Leave" => parse(body)
            .and_then(|c: NetworkCall| backend.leave(&c.network_id, &c.endpoint_id))
            .map(|()| json!({})),
        "NetworkDriver.ProgramExternalConnectivity" => {
            parse(body).and_then(|c| program(c, backend))
        }
        "NetworkDriver.RevokeExternalConnectivity" => parse(body)
            .and_then(|c: NetworkCall| backend.unpublish(&c.network_id, &c.endpoint_id))
            .map(|()| json!({})),
        // Swarm and node discovery: nothing to do for a local driver.
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => Ok(json!({})),
        _ => {
            return Reply {
                status: 404,
                body: json!({ "Err": format!("nsnet does not implement {call}") }),
            }
        }
    };
    match result {
        Ok(body) => Reply::ok(body),
        // Docker shows the text to the user ("Error response from daemon: …").
        Err(e) => Reply::ok(json!({ "Err": e })),
    }
}

/// An IpamDriver call. Its errors go under `Error` (NetworkDriver's under
/// `Err`: the two protocols differ there).
fn ipam(method: &str, body: &[u8], backend: &dyn Backend) -> Reply {
    let result = match method {
        "GetCapabilities" => {
            Ok(json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false }))
        }
        "GetDefaultAddressSpaces" => Ok(json!({
            "LocalDefaultAddressSpace": "nsnet",
            "GlobalDefaultAddressSpace": "nsnet-global",
        })),
        "RequestPool" => parse(body).and_then(|c| request_pool(c, backend)),
        "ReleasePool" => parse(body)
            .and_then(|c: PoolCall| backend.release_pool(&c.pool_id))
            .map(|()| json!({})),
        "RequestAddress" => parse(body).and_then(|c| request_address(c, backend)),
        "ReleaseAddress" => parse(body).and_then(|c: PoolCall| {
            let addr = address(&c.address)?.ok_or("nsnet: ReleaseAddress without an address")?;
            backend
                .release_address(&c.pool_id, addr)
                .map(|()| json!({}))
        }),
        _ => {
            return Reply {
                status: 404,
                body: json!({ "Error": format!("nsnet does not implement IpamDriver.{method}") }),
            }
        }
    };
    match result {
        Ok(body) => Reply::ok(body),
        Err(e) => Reply::ok(json!({ "Error": e })),
    }
}

fn request_pool(c: RequestPool, backend: &dyn Backend) -> Result<Value, String> {
    let subnet = |p: &str| crate::model::rejection::parse_subnet(p).map_err(|e| e.to_string());
    let asked = match c.pool.as_str() {
        "" => None,
        p => Some(subnet(p)?),
    };
    let range = match c.sub_pool.as_str() {
        "" => None,
        r => Some(subnet(r)?),
    };
    let cidr = backend.request_pool(asked, range, c.v6)?;
    let id = crate::model::docker::Pool::new(cidr, range).id();
    Ok(json!({ "PoolID": id, "Pool": cidr.to_string(), "Data": {} }))
}

fn request_address(c: PoolCall, backend: &dyn Backend) -> Result<Value, String> {
    let gateway = c.options.get(ADDRESS_TYPE).and_then(Value::as_str) == Some(GATEWAY_TYPE);
    let asked = address(&c.address)?;
    let addr = backend.request_address(&c.pool_id, asked, gateway)?;
    Ok(json!({ "Address": addr.to_string(), "Data": {} }))
}

/// An address as IPAM calls carry it: bare or with a prefix, or empty.
fn address(text: &str) -> Result<Option<IpAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let bare = text.split('/').next().unwrap_or(text);
    crate::model::rejection::parse_ip(bare, "address")
        .map(Some)
        .map_err(|e| e.to_string())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("nsnet: unreadable request: {e}"))
}

fn create_network(c: CreateNetwork, call: &[u8], backend: &dyn Backend) -> Result<Value, String> {
    let req = network_request(&c).map_err(|e| e.to_string())?;
    backend.create_network(&req, call)?;
    Ok(json!({}))
}

/// The nsnet network Docker asks for.
fn network_request(c: &CreateNetwork) -> Result<CreateRequest, crate::model::Rejection> {
    let mut req = CreateRequest::named(&docker::network_name(&c.network_id)?);
    req.docker = Some(c.network_id.clone());
    // Docker's embedded DNS answers for its containers; nsnet's server is
    // there for who asks (`-o dns=true`).
    req.dns = false;
    req.internal = c.options.get(INTERNAL).and_then(Value::as_bool) == Some(true);
    let v6 = c.options.get(ENABLE_IPV6).and_then(Value::as_bool) == Some(true);
    let data = c.ipv4.iter().flatten();
    let data = data.chain(c.ipv6.iter().flatten().filter(|_| v6));
    for d in data {
        if d.pool.is_empty() {
            continue;
        }
        req.subnets
            .push(crate::model::rejection::parse_subnet(&d.pool)?);
        if let Some(gw) = docker::gateway_address(&d.gateway)? {
            req.gateways.push(gw);
        }
    }
    let generic: BTreeMap<String, String> = match c.options.get(GENERIC) {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    if let Some(overlay) = docker::apply_options(&mut req, &generic)? {
        let nsnet_ipam = c
            .ipv4
            .iter()
            .flatten()
            .all(|d| d.address_space.starts_with("nsnet"));
        if !nsnet_ipam {
            return Err(crate::model::Rejection::MissingOption {
                option: "--ipam-driver nsnet",
                reason: "on an overlay network each host hands out addresses of its own host subnet, which only nsnet's IPAM knows",
            });
        }
        overlay_request(&mut req, overlay)?;
    }
    if let Some(crate::model::lan::LanRequest::HostDevice { .. }) = req.lan {
        // Docker moves and configures the interface it is handed itself.
        return Err(crate::model::Rejection::NotForDriver {
            option: "driver=host-device",
            driver: "Docker",
        });
    }
    Ok(req)
}

/// Makes `req` the request of an overlay network: named the same on every
/// host, with this host's bridge named after the Docker ID; its gateway
/// is that of this host's subnet, not the one Docker's IPAM data names.
fn overlay_request(
    req: &mut CreateRequest,
    asked: docker::OverlayAsked,
) -> Result<(), crate::model::Rejection> {
    let cluster = req
        .subnets
        .first()
        .copied()
        .ok_or(crate::model::Rejection::MissingOption {
            option: "--subnet",
            reason: "an overlay network takes its cluster subnet, such as 10.200.0.0/16",
        })?;
    req.bridge = Some(req.name.clone());
    req.name = docker::overlay_name(asked.name.as_deref(), &cluster);
    req.gateways.clear();
    req.overlay = Some(asked.request(&req.name, &req.subnets)?);
    Ok(())
}

fn create_endpoint(c: CreateEndpoint, backend: &dyn Backend) -> Result<Value, String> {
    let iface = c.interface.unwrap_or_default();
    let mut addresses = Vec::new();
    for a in [&iface.address, &iface.address_ipv6] {
        if let Some(a) = docker::endpoint_address(a).map_err(|e| e.to_string())? {
            addresses.push(a);
        }
    }
    let mac = (!iface.mac_address.is_empty()).then(|| iface.mac_address.to_lowercase());
    backend.create_endpoint(&c.network_id, &c.endpoint_id, &addresses, mac)?;
    // Docker set the addresses (and the MAC, if any): nothing to add.
    Ok(json!({}))
}

fn join(c: Join, backend: &dyn Backend) -> Result<Value, String> {
    let (att, net) = backend.join(&c.network_id, &c.endpoint_id, PathBuf::from(&c.sandbox_key))?;
    let mut reply = json!({
        "InterfaceName": { "SrcName": att.ifname, "DstPrefix": "eth" },
    });
    if net.internal {
        // No default route, and no docker_gwbridge instead of one.
        reply["DisableGatewayService"] = json!(true);
        return Ok(reply);
    }
    // The gateway is nsnet's: Docker then adds no docker_gwbridge, and
    // sends the published ports here (ProgramExternalConnectivity).
    for s in &net.subnets {
        let key = if s.gateway.is_ipv4() {
            "Gateway"
        } else {
            "GatewayIPv6"
        };
        reply[key] = json!(s.gateway.to_string());
    }
    Ok(reply)
}

fn program(c: Program, backend: &dyn Backend) -> Result<Value, String> {
    let ports: Vec<DockerPort> = match c.options.get(PORTMAP) {
        Some(v @ Value::Array(_)) => serde_json::from_value(v.clone())
            .map_err(|e| format!("nsnet: unreadable {PORTMAP}: {e}"))?,
        _ => Vec::new(),
    };
    let ports = docker::port_mappings(&ports).map_err(|e| e.to_string())?;
    backend.publish(&c.network_id, &c.endpoint_id, &ports)?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests;

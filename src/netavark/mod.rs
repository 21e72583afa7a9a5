//! nsnet as a netavark plugin (podman 5 and 6): installed in a netavark
//! plugin directory as `nsnet`, it is run as `nsnet info`, `nsnet create`,
//! `nsnet setup NETNS` and `nsnet teardown NETNS`, with JSON on stdin and
//! the answer (or `{"error": ...}` and exit 1) on stdout. Those four
//! subcommands are how nsnet knows it is a plugin: netavark sets no
//! environment, and argv[0] is the driver's name, `nsnet`. A front end:
//! it goes through `api` only.
//!
//! `create` makes nothing in the kernel (podman's `network rm` calls no
//! plugin): it validates and completes the network. The nsnet network is
//! made at its first `setup` and goes with its last `teardown`, as
//! netavark's own bridge driver does.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::Nsnet;
use crate::model::ports::{PortMapping, Protocol};
use crate::model::{ConnectRequest, CreateRequest, NsRef, Rejection, RequestedIp};
use crate::{error_chain, Error};

/// The subcommands of netavark's plugin API.
pub const VERBS: [&str; 4] = ["info", "create", "setup", "teardown"];

/// Whether the command line is a netavark plugin call.
pub fn is_plugin_call(args: &[String]) -> bool {
    args.get(1).is_some_and(|a| VERBS.contains(&a.as_str()))
}

/// Runs one plugin call: prints the answer, returns the exit code.
pub fn main(nsnet: &Nsnet, args: &[String]) -> i32 {
    let mut stdin = Vec::new();
    let verb = args.get(1).map(String::as_str).unwrap_or_default();
    if verb != "info" {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let netns = args.get(2).map(String::as_str);
    match run(nsnet, verb, netns, &stdin) {
        Ok(Some(out)) => {
            println!("{out}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            println!("{}", json!({ "error": e }));
            1
        }
    }
}

/// One call, its answer or its error message.
pub fn run(
    nsnet: &Nsnet,
    verb: &str,
    netns: Option<&str>,
    stdin: &[u8],
) -> Result<Option<Value>, String> {
    match verb {
        "info" => Ok(Some(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "api_version": "1.0.0",
            "nsnet": "network driver for netavark: nsnet's bridge, overlay, macvlan and host-device networks",
        }))),
        "create" => create(parse(stdin)?, &taken_subnets(nsnet)?).map(Some),
        "setup" => setup(nsnet, need(netns)?, parse(stdin)?).map(Some),
        "teardown" => teardown(nsnet, need(netns)?, parse(stdin)?).map(|()| None),
        other => Err(format!("nsnet: unknown plugin call {other:?}")),
    }
}

fn need(netns: Option<&str>) -> Result<&str, String> {
    netns.ok_or_else(|| "nsnet: setup and teardown take the namespace's path".to_string())
}

fn parse<T: serde::de::DeserializeOwned>(stdin: &[u8]) -> Result<T, String> {
    serde_json::from_slice(stdin).map_err(|e| format!("nsnet: unreadable input: {e}"))
}

fn say(e: Error) -> String {
    error_chain(&e)
}

fn rejected(e: Rejection) -> String {
    e.to_string()
}

/// A network as netavark writes it (fields nsnet reads; the rest is kept
/// as it came).
#[derive(Deserialize)]
struct NetworkDef {
    name: String,
    id: String,
    #[serde(default)]
    network_interface: Option<String>,
    #[serde(default)]
    subnets: Option<Vec<SubnetDef>>,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    dns_enabled: bool,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct SubnetDef {
    subnet: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    /// `--ip-range`, as podman passes it: first and last address.
    #[serde(default)]
    lease_range: Option<LeaseRange>,
}

#[derive(Deserialize)]
struct LeaseRange {
    #[serde(default)]
    start_ip: Option<IpAddr>,
    #[serde(default)]
    end_ip: Option<IpAddr>,
}

/// The lease ranges of `def` (podman's `--ip-range`) as nsnet's ranges
/// (CIDR blocks). podman's IPAM keeps to them on a bridge network; on a
/// macvlan network nsnet hands out the addresses, from these blocks; an
/// overlay's hosts each hand out their own host subnet and refuse them.
fn lease_ranges(def: &NetworkDef, req: &mut CreateRequest) -> Result<(), Rejection> {
    for s in def.subnets.iter().flatten() {
        let Some(r) = &s.lease_range else {
            continue;
        };
        if req.overlay.is_some() {
            return Err(Rejection::NotForDriver {
                option: "--ip-range",
                driver: "overlay",
            });
        }
        let Some(crate::model::lan::LanRequest::Macvlan { ip_ranges, .. }) = &mut req.lan else {
            continue;
        };
        // A missing end: the subnet's own.
        let (start, end) = (
            r.start_ip.unwrap_or(s.subnet.network()),
            r.end_ip.unwrap_or(s.subnet.broadcast()),
        );
        let block = crate::model::ipam::range_block(&s.subnet, start, end);
        ip_ranges.push(block.ok_or_else(|| Rejection::RangeNotBlock {
            start: start.to_string(),
            end: end.to_string(),
            covering: crate::model::ipam::covering_block(&start, &end),
        })?);
    }
    Ok(())
}

/// The nsnet network of a netavark network definition: its name, its
/// subnets and gateways, and nsnet's options (`--opt` under the names of
/// the Docker driver's `-o`).
fn network_request(def: &NetworkDef) -> Result<CreateRequest, Rejection> {
    let mut req = CreateRequest::named(&def.name);
    req.netavark = Some(def.id.clone());
    req.internal = def.internal;
    req.dns = def.dns_enabled;
    for s in def.subnets.iter().flatten() {
        req.subnets.push(s.subnet);
        req.gateways.extend(s.gateway);
    }
    let opts = def.options.clone().unwrap_or_default();
    if let Some(overlay) = crate::model::docker::apply_options(&mut req, &opts)? {
        if overlay.name.is_some() {
            return Err(Rejection::MissingOption {
                option: "the network's name",
                reason: "an overlay through podman is named by podman's network name: --opt name is for Docker",
            });
        }
        // Named in etcd as podman names it: the same on every host.
        req.overlay = Some(overlay.request(&req.name, &req.subnets)?);
    }
    lease_ranges(def, &mut req)?;
    if req.lan.is_some() {
        // The network's interface is the LAN's host interface (as with
        // netavark's own macvlan driver): nothing to name.
        return Ok(req);
    }
    req.bridge = def.network_interface.clone();
    if req.bridge.is_none() && crate::model::names::validate_ifname(&def.name).is_err() {
        // The bridge takes the network's name when it can.
        let id = def.id.get(..12).unwrap_or(&def.id);
        req.bridge = Some(format!("nsp-{id}"));
    }
    Ok(req)
}

/// The subnets of nsnet's networks (netavark tells a plugin none of
/// podman's).
fn taken_subnets(nsnet: &Nsnet) -> Result<Vec<IpNet>, String> {
    let state = nsnet.state().map_err(say)?;
    let taken = state
        .networks
        .values()
        .flat_map(|n| n.subnets.iter().map(|s| s.cidr))
        .collect();
    Ok(taken)
}

/// The IPAM driver an overlay network carries, so that podman leaves its
/// addresses to nsnet: each host hands out those of its own host subnet
/// (podman allocates for networks without one, or with "host-local").
pub const OWN_IPAM: &str = "nsnet";

/// `create`: checks the network and completes it (subnets, gateways, the
/// bridge's name); nothing is made. Without a subnet it gets a free one
/// of nsnet's pools (free of nsnet's networks: netavark shows a plugin
/// none of podman's others).
fn create(mut network: Value, taken: &[IpNet]) -> Result<Value, String> {
    let def: NetworkDef =
        serde_json::from_value(network.clone()).map_err(|e| format!("nsnet: {e}"))?;
    let mut req = network_request(&def).map_err(rejected)?;
    if req.overlay.is_some() {
        // The cluster subnet is the network's; gateways are each host's.
        network["ipam_options"] = json!({ "driver": OWN_IPAM });
        network["network_interface"] = json!(req.bridge.clone().unwrap_or(def.name.clone()));
        return Ok(network);
    }
    if let Some(lan) = &req.lan {
        // nsnet hands out the addresses: it probes the LAN for them first.
        network["ipam_options"] = json!({ "driver": OWN_IPAM });
        network["network_interface"] = json!(lan.host_interface());
        if req.subnets.is_empty() && matches!(lan, crate::model::lan::LanRequest::Macvlan { .. }) {
            return Err(rejected(Rejection::MissingOption {
                option: "--subnet",
                reason: "a macvlan network takes the LAN's subnet (and --gateway, when the LAN's router is not its first address)",
            }));
        }
    } else if req.subnets.is_empty() {
        let free = crate::model::ipam::pick_free_subnet(false, taken);
        req.subnets
            .push(free.ok_or_else(|| rejected(Rejection::NoFreeSubnet))?);
    }
    let mut subnets = Vec::new();
    for cidr in &req.subnets {
        let asked = req
            .gateways
            .iter()
            .find(|g| g.is_ipv4() == cidr.addr().is_ipv4());
        let gateway = match asked {
            Some(g) => crate::model::ipam::check_gateway(cidr, *g).map(|()| *g),
            None => crate::model::ipam::default_gateway(cidr),
        }
        .map_err(|e| rejected(Rejection::BadGateway(e)))?;
        let mut subnet = json!({ "subnet": cidr.to_string(), "gateway": gateway.to_string() });
        // podman's IPAM keeps to the lease range it was given.
        let given = network["subnets"].as_array().into_iter().flatten();
        if let Some(range) = given
            .filter(|s| s["subnet"].as_str() == Some(&cidr.to_string()))
            .find_map(|s| s.get("lease_range"))
        {
            subnet["lease_range"] = range.clone();
        }
        subnets.push(subnet);
    }
    network["subnets"] = json!(subnets);
    if req.lan.is_none() {
        network["network_interface"] = json!(req.bridge.clone().unwrap_or(def.name.clone()));
    }
    Ok(network)
}

/// What netavark passes to `setup` and `teardown`.
#[derive(Deserialize)]
struct Call {
    #[serde(default)]
    container_name: String,
    #[serde(default)]
    port_mappings: Option<Vec<PortDef>>,
    network: Value,
    network_options: NetworkOptions,
}

#[derive(Deserialize)]
struct NetworkOptions {
    #[serde(default)]
    aliases: Option<Vec<String>>,
    interface_name: String,
    #[serde(default)]
    static_ips: Option<Vec<IpAddr>>,
    #[serde(default)]
    static_mac: Option<String>,
}

#[derive(Deserialize)]
struct PortDef {
    container_port: u16,
    #[serde(default)]
    host_ip: String,
    host_port: u16,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    range: u16,
}

/// podman's port mappings as nsnet's: `protocol` may list several.
fn port_mappings(ports: &[PortDef]) -> Result<Vec<PortMapping>, Rejection> {
    let mut out = Vec::new();
    for p in ports {
        let host_ip = match p.host_ip.as_str() {
            "" => None,
            ip => Some(crate::model::rejection::parse_ip(ip, "host address")?),
        };
        for proto in p.protocol.split(',').filter(|s| !s.is_empty()) {
            let protocol = match proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                other => {
                    return Err(Rejection::Unparsable {
                        what: "port protocol",
                        value: other.to_string(),
                        expected: "expected tcp, udp or sctp",
                    })
                }
            };
            out.push(PortMapping {
                host_ip,
                host_port: p.host_port,
                port: p.container_port,
                count: p.range.max(1),
                protocol,
            });
        }
    }
    Ok(out)
}

/// `setup NETNS`: the nsnet network (made at its first container), the
/// container's attachment with podman's addresses and MAC, its ports, its
/// names; the status block podman writes the container's resolv.conf from.
fn setup(nsnet: &Nsnet, netns: &str, call: Call) -> Result<Value, String> {
    let def: NetworkDef =
        serde_json::from_value(call.network.clone()).map_err(|e| format!("nsnet: {e}"))?;
    let namespace = NsRef::parse(netns).map_err(|e| e.to_string())?;
    let mut req = ConnectRequest::new(&def.name, namespace.clone());
    req.ifname = Some(call.network_options.interface_name.clone());
    req.ips = call
        .network_options
        .static_ips
        .iter()
        .flatten()
        .map(|a| RequestedIp {
            addr: *a,
            prefix: None,
        })
        .collect();
    if let Some(m) = &call.network_options.static_mac {
        req.mac = Some(crate::model::names::parse_mac(m).map_err(|e| e.to_string())?);
    }
    // The container's ports come with each of its networks: they are
    // published once, on the first nsnet network that has the container.
    let ports =
        port_mappings(call.port_mappings.as_deref().unwrap_or_default()).map_err(rejected)?;
    if !ports.is_empty() && !publishes_elsewhere(nsnet, &namespace)? {
        req.publish = ports;
    }
    req.aliases = names(&call);
    let made = match nsnet.connect_reporting(&req) {
        Err(Error::Rejected(Rejection::NoSuchNetwork { .. })) => {
            let net = network_request(&def).map_err(rejected)?;
            match nsnet.create_network(&net) {
                Ok(_) | Err(Error::Rejected(Rejection::NetworkExists { .. })) => {}
                Err(e) => return Err(say(e)),
            }
            nsnet.connect_reporting(&req).map_err(say)?
        }
        other => other.map_err(say)?,
    };
    let net = &made.network;
    let subnets: Vec<Value> = made
        .attachment
        .addresses
        .iter()
        .map(|a| {
            let gw = net.subnets.iter().find(|s| s.cidr.contains(&a.addr()));
            json!({ "ipnet": a.to_string(), "gateway": gw.map(|s| s.gateway.to_string()) })
        })
        .collect();
    let mut status = json!({
        "interfaces": {
            made.attachment.ifname.clone(): { "mac_address": made.macs.1, "subnets": subnets }
        }
    });
    let servers: Vec<String> = net
        .dns_addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    if !servers.is_empty() {
        let domain = net
            .dns_domain
            .clone()
            .unwrap_or_else(|| crate::model::DEFAULT_DNS_DOMAIN.to_string());
        status["dns_server_ips"] = json!(servers);
        status["dns_search_domains"] = json!([domain]);
    }
    Ok(status)
}

/// The container's names on the network: its name and its aliases
/// (netavark hands them to plugins, not to a DNS server).
fn names(call: &Call) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let given =
        std::iter::once(&call.container_name).chain(call.network_options.aliases.iter().flatten());
    for n in given {
        if !n.is_empty() && !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// Whether another network already publishes ports to this namespace.
fn publishes_elsewhere(nsnet: &Nsnet, namespace: &NsRef) -> Result<bool, String> {
    let state = nsnet.state().map_err(say)?;
    let publishes = state
        .attachments_of(namespace)
        .any(|(_, a)| !a.ports.is_empty());
    Ok(publishes)
}

/// `teardown NETNS`: the container leaves (also when its namespace is
/// gone); the network goes with its last container if netavark made it.
fn teardown(nsnet: &Nsnet, netns: &str, call: Call) -> Result<(), String> {
    let def: NetworkDef =
        serde_json::from_value(call.network).map_err(|e| format!("nsnet: {e}"))?;
    let namespace = NsRef::parse(netns).map_err(|e| e.to_string())?;
    match nsnet.disconnect(&def.name, &namespace) {
        Ok(_)
        | Err(Error::Rejected(Rejection::NoSuchNetwork { .. }))
        | Err(Error::Rejected(Rejection::NotConnected { .. })) => {}
        Err(e) => return Err(say(e)),
    }
    let state = nsnet.state().map_err(say)?;
    if let Some(net) = state.networks.get(&def.name) {
        if net.netavark.as_deref() == Some(def.id.as_str()) && net.attachments.is_empty() {
            match nsnet.remove_network(&def.name, false) {
                // Another container came meanwhile: the network stays.
                Ok(_) | Err(Error::Rejected(Rejection::NetworkInUse { .. })) => {}
                Err(Error::Rejected(Rejection::NoSuchNetwork { .. })) => {}
                Err(e) => return Err(say(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(extra: Value) -> Value {
        let mut n = json!({"name": "nsn", "id": "ab".repeat(32), "driver": "nsnet",
            "ipv6_enabled": false, "internal": false, "dns_enabled": true});
        for (k, v) in extra.as_object().unwrap() {
            n[k] = v.clone();
        }
        n
    }

    #[test]
    fn create_completes_the_network_and_keeps_the_rest() {
        let out = create(
            network(json!({
                "subnets": [{"subnet": "10.91.0.0/24"}],
                "options": {"mtu": "1400", "icc": "false"},
                "labels": {"a": "b"}
            })),
            &[],
        )
        .unwrap();
        assert_eq!(
            out["subnets"],
            json!([{"subnet": "10.91.0.0/24", "gateway": "10.91.0.1"}])
        );
        assert_eq!(out["network_interface"], "nsn");
        assert_eq!(out["labels"], json!({"a": "b"}));
        assert_eq!(out["id"], "ab".repeat(32));
        // No subnet: one is chosen.
        let out = create(network(json!({})), &[]).unwrap();
        assert!(out["subnets"][0]["subnet"].as_str().is_some(), "{out}");
        // A long name: the bridge is named after the ID.
        let out = create(network(json!({"name": "a-very-long-podman-network"})), &[]).unwrap();
        assert_eq!(out["network_interface"], "nsp-abababababab");
    }

    #[test]
    fn ip_ranges_stay_with_podman_or_become_the_lan_s() {
        let range = json!({"start_ip": "192.0.2.65", "end_ip": "192.0.2.126"});
        let subnets = json!([{"subnet": "192.0.2.0/24", "lease_range": range}]);
        // A bridge: podman's IPAM hands out the addresses, from the range.
        let out = create(network(json!({ "subnets": subnets })), &[]).unwrap();
        assert_eq!(out["subnets"][0]["lease_range"], range);
        // macvlan: nsnet does, from the block the range spans.
        let lan = |range: Value| {
            let def = network(json!({
                "subnets": [{"subnet": "192.0.2.0/24", "lease_range": range}],
                "options": {"driver": "macvlan", "parent": "lan0"}
            }));
            let def: NetworkDef = serde_json::from_value(def).unwrap();
            network_request(&def)
        };
        let Some(crate::model::lan::LanRequest::Macvlan { ip_ranges, .. }) =
            lan(range.clone()).unwrap().lan
        else {
            panic!("a macvlan request")
        };
        assert_eq!(ip_ranges, vec!["192.0.2.64/26".parse::<IpNet>().unwrap()]);
        let e = lan(json!({"start_ip": "192.0.2.10", "end_ip": "192.0.2.20"})).unwrap_err();
        assert!(e.to_string().contains("192.0.2.10-192.0.2.20"), "{e}");
        assert!(e.to_string().contains("192.0.2.0/27"), "{e}");
        // An overlay: each host has its own host subnet.
        let e = create(
            network(json!({
                "subnets": [{"subnet": "10.200.0.0/16", "lease_range": {"start_ip": "10.200.1.1"}}],
                "options": {"driver": "overlay", "etcd": "http://192.0.2.9:2379"}
            })),
            &[],
        )
        .unwrap_err();
        assert!(e.contains("--ip-range"), "{e}");
    }

    #[test]
    fn bad_networks_are_refused_with_the_value() {
        let cases = [
            (
                json!({"options": {"colour": "red"}}),
                "unknown options colour",
            ),
            (json!({"options": {"icc": "perhaps"}}), "icc=perhaps"),
            (
                json!({"subnets": [{"subnet": "10.91.0.0/24", "gateway": "10.92.0.1"}]}),
                "10.92.0.1",
            ),
        ];
        for (extra, says) in cases {
            let e = create(network(extra.clone()), &[]).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        assert!(create(json!({"name": "x"}), &[])
            .unwrap_err()
            .contains("id"));
    }

    #[test]
    fn ports_and_names_come_from_the_call() {
        let ports: Vec<PortDef> = serde_json::from_value(json!([
            {"container_port": 80, "host_ip": "", "host_port": 8080, "protocol": "tcp,udp", "range": 1},
            {"container_port": 53, "host_ip": "127.0.0.1", "host_port": 5353, "protocol": "udp", "range": 2}
        ]))
        .unwrap();
        let m = port_mappings(&ports).unwrap();
        let shown: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "8080:80/tcp",
                "8080:80/udp",
                "127.0.0.1:5353-5354:53-54/udp"
            ]
        );
        let call: Call = serde_json::from_value(json!({
            "container_id": "c", "container_name": "web", "network": {},
            "network_options": {"interface_name": "eth0", "aliases": ["www", "web"]}
        }))
        .unwrap();
        assert_eq!(names(&call), ["web", "www"]);
    }

    #[test]
    fn plugin_calls_are_told_apart_from_commands() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_plugin_call(&args(&[
            "/usr/libexec/netavark/nsnet",
            "setup",
            "/run/netns/x"
        ])));
        assert!(is_plugin_call(&args(&["nsnet", "info"])));
        assert!(!is_plugin_call(&args(&["nsnet", "network", "create", "x"])));
        assert!(!is_plugin_call(&args(&["nsnet"])));
    }
}

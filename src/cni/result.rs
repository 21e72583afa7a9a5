//! ADD results in the format of the configuration's cniVersion.

use serde_json::{json, Value};

use super::NetConf;
use crate::model::{Attachment, Network};

pub fn render(
    conf: &NetConf,
    net: &Network,
    att: &Attachment,
    netns: &str,
    macs: (String, String),
) -> Value {
    let (host_mac, inside_mac) = macs;
    let old = matches!(conf.cni_version.as_str(), "0.3.0" | "0.3.1" | "0.4.0");
    // A network on the LAN has no bridge and no host end: the container's
    // interface is the only one (as the CNI macvlan plugin reports it).
    let (interfaces, inside) = match net.has_bridge() {
        true => (
            json!([
                {"name": net.bridge, "mac": net.bridge_mac},
                {"name": att.host_ifname, "mac": host_mac},
                {"name": att.ifname, "mac": inside_mac, "sandbox": netns},
            ]),
            2,
        ),
        false => (
            json!([{"name": att.ifname, "mac": inside_mac, "sandbox": netns}]),
            0,
        ),
    };
    let ips: Vec<Value> = att
        .addresses
        .iter()
        .map(|a| {
            let gateway = net
                .subnets
                .iter()
                .find(|s| s.cidr.contains(&a.addr()))
                .map(|s| s.gateway.to_string());
            let mut ip = json!({"address": a.to_string(), "interface": inside});
            if let Some(g) = gateway {
                ip["gateway"] = json!(g);
            }
            if old {
                ip["version"] = json!(if a.addr().is_ipv4() { "4" } else { "6" });
            }
            ip
        })
        .collect();
    let routes: Vec<Value> = if net.internal {
        vec![]
    } else {
        net.subnets
            .iter()
            .map(|s| {
                let dst = if s.cidr.addr().is_ipv4() {
                    "0.0.0.0/0"
                } else {
                    "::/0"
                };
                json!({"dst": dst, "gw": s.gateway.to_string()})
            })
            .collect()
    };
    json!({
        "cniVersion": conf.cni_version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns_of(conf, net),
    })
}

/// The result's `dns`: the runtime's own DNS object when the configuration
/// has one; otherwise, on a network with nsnet's DNS, where the server
/// answers and the search domain, for the runtime to write into the
/// container.
fn dns_of(conf: &NetConf, net: &crate::model::Network) -> Value {
    let servers = net.dns_addresses();
    match &conf.dns {
        Some(v @ Value::Object(_)) => v.clone(),
        _ if !servers.is_empty() => json!({
            "nameservers": servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "search": [net.domain()],
        }),
        _ => json!({}),
    }
}

//! ADD results in the format of the configuration's cniVersion.

use serde_json::{json, Value};

use super::NetConf;
use crate::model::{Attachment, Network};
use crate::netlink::Handle;
use crate::netns;

fn mac_string(mac: Option<[u8; 6]>) -> String {
    mac.map(|m| crate::names::format_mac(&m))
        .unwrap_or_default()
}

/// MACs as the kernel has them now (the sandbox side's is set in its
/// namespace).
fn live_macs(att: &Attachment) -> (String, String) {
    let host = Handle::open()
        .ok()
        .and_then(|mut h| h.link_by_name(&att.host_ifname).ok().flatten())
        .and_then(|l| l.mac);
    let inside = att.namespace.open().ok().and_then(|fd| {
        netns::in_netns(
            std::os::fd::AsFd::as_fd(&fd),
            &att.namespace.to_string(),
            || {
                Handle::open()
                    .ok()
                    .and_then(|mut h| h.link_by_name(&att.ifname).ok().flatten())
                    .and_then(|l| l.mac)
            },
        )
        .ok()
        .flatten()
    });
    (mac_string(host), mac_string(inside))
}

pub fn render(conf: &NetConf, net: &Network, att: &Attachment, netns: &str) -> Value {
    let (host_mac, inside_mac) = live_macs(att);
    let old = matches!(conf.cni_version.as_str(), "0.3.0" | "0.3.1" | "0.4.0");
    let interfaces = json!([
        {"name": net.bridge, "mac": net.bridge_mac},
        {"name": att.host_ifname, "mac": host_mac},
        {"name": att.ifname, "mac": inside_mac, "sandbox": netns},
    ]);
    let ips: Vec<Value> = att
        .addresses
        .iter()
        .map(|a| {
            let gateway = net
                .subnets
                .iter()
                .find(|s| s.cidr.contains(&a.addr()))
                .map(|s| s.gateway.to_string());
            let mut ip = json!({"address": a.to_string(), "interface": 2});
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
        "dns": conf.dns.clone().unwrap_or_else(|| json!({})),
    })
}

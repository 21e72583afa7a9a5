//! VXLAN only from known peers. VXLAN has no authentication: anyone who
//! can send UDP to a host's VXLAN port could inject frames into an
//! overlay network. nsnet's table `ip nsnet_vxlan` drops, at the input
//! hook (before the VXLAN socket decapsulates), every VXLAN packet of an
//! overlay network whose source is not one of that network's current
//! peers: one set of peer addresses per network (`peers_VNI`), one rule
//! matching the network's VTEP, port and VNI (the VXLAN header's bits 32
//! to 55, after the 8-byte UDP header).
//!
//! A table of its own, beside `inet nsnet`: that one is rendered from the
//! record and rebuilt with it, while the peers are what the agent learns
//! from etcd; here the agent keeps the structure (`ensure`) and changes
//! the sets element by element as peers come and go (`change`).

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::Error;

/// The table's name (family `ip`: the underlay is IPv4).
pub const TABLE: &str = "nsnet_vxlan";
const CHAIN: &str = "input";

pub use crate::model::overlay::Guard;

/// The set of network `vni`'s peers.
pub fn set_name(vni: u32) -> String {
    format!("peers_{vni}")
}

fn set(vni: u32) -> Value {
    json!({"family": "ip", "table": TABLE, "name": set_name(vni), "type": "ipv4_addr"})
}

/// The drop rule of one network, as `nft -j` takes it.
fn rule(g: &Guard) -> Value {
    let field = |proto: &str, field: &str| json!({"payload": {"protocol": proto, "field": field}});
    let eq =
        |left: Value, right: Value| json!({"match": {"op": "==", "left": left, "right": right}});
    json!({"family": "ip", "table": TABLE, "chain": CHAIN, "expr": [
        eq(field("ip", "daddr"), json!(g.vtep.to_string())),
        eq(field("udp", "dport"), json!(g.port)),
        // The VNI: bits 32-55 of the VXLAN header, after the UDP header.
        eq(json!({"payload": {"base": "th", "offset": 96, "len": 24}}), json!(g.vni)),
        {"match": {"op": "!=", "left": field("ip", "saddr"),
                   "right": format!("@{}", set_name(g.vni))}},
        {"counter": null},
        {"drop": null},
    ]})
}

/// The transaction that makes the table guard exactly `guards`: sets of
/// networks that stay keep their elements; sets in `gone` are deleted; no
/// guards, no table.
pub fn ensure_transaction(guards: &[Guard], gone: &[u32]) -> Value {
    let table = json!({"family": "ip", "name": TABLE});
    if guards.is_empty() {
        return json!({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]});
    }
    let chain = json!({"family": "ip", "table": TABLE, "name": CHAIN, "type": "filter",
                       "hook": "input", "prio": -200, "policy": "accept"});
    let mut cmds = vec![
        json!({"add": {"table": table}}),
        json!({"add": {"chain": chain}}),
        json!({"flush": {"chain": {"family": "ip", "table": TABLE, "name": CHAIN}}}),
    ];
    for g in guards {
        cmds.push(json!({"add": {"set": set(g.vni)}}));
        cmds.push(json!({"add": {"rule": rule(g)}}));
    }
    for vni in gone.iter().filter(|v| !guards.iter().any(|g| g.vni == **v)) {
        cmds.push(json!({"delete": {"set": set(*vni)}}));
    }
    json!({ "nftables": cmds })
}

/// Adds and removes peers of network `vni`, element by element.
pub fn change_transaction(vni: u32, add: &[Ipv4Addr], remove: &[Ipv4Addr]) -> Value {
    let elems = |addrs: &[Ipv4Addr]| -> Value {
        let mut s = set(vni);
        s["elem"] = json!(addrs.iter().map(ToString::to_string).collect::<Vec<_>>());
        json!({ "element": s })
    };
    let mut cmds = Vec::new();
    if !remove.is_empty() {
        // Deleting an element that is not there fails the transaction:
        // add it first (a no-op when present), then delete.
        cmds.push(json!({ "add": elems(remove) }));
        cmds.push(json!({ "delete": elems(remove) }));
    }
    if !add.is_empty() {
        cmds.push(json!({ "add": elems(add) }));
    }
    json!({ "nftables": cmds })
}

/// Makes the table guard exactly `guards` (see `ensure_transaction`).
pub fn ensure(guards: &[Guard]) -> Result<(), Error> {
    let present = present_sets()?;
    super::apply(&ensure_transaction(guards, &present))
}

/// Changes network `vni`'s peers.
pub fn change(vni: u32, add: &[Ipv4Addr], remove: &[Ipv4Addr]) -> Result<(), Error> {
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    super::apply(&change_transaction(vni, add, remove))
}

/// The VNIs whose sets the table has.
fn present_sets() -> Result<Vec<u32>, Error> {
    let Some(v) = super::list(&["-j", "list", "sets", "table", "ip", TABLE])? else {
        return Ok(Vec::new());
    };
    Ok(items(&v, "set")
        .filter_map(|s| s["name"].as_str()?.strip_prefix("peers_")?.parse().ok())
        .collect())
}

fn items<'a>(v: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |i| i.get(kind))
}

/// The peers network `vni`'s set holds, and whether its drop rule is
/// there; `None` when there is no such set.
pub fn read(vni: u32) -> Result<Option<(Vec<Ipv4Addr>, bool)>, Error> {
    let Some(v) = super::list(&["-j", "list", "table", "ip", TABLE])? else {
        return Ok(None);
    };
    let Some(s) = items(&v, "set").find(|s| s["name"] == set_name(vni)) else {
        return Ok(None);
    };
    let peers = s["elem"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.parse().ok())
        .collect();
    let wanted = format!("@{}", set_name(vni));
    let ruled = items(&v, "rule").any(|r| r.to_string().contains(&wanted));
    Ok(Some((peers, ruled)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(vni: u32) -> Guard {
        Guard {
            vni,
            port: 4789,
            vtep: "198.51.100.1".parse().unwrap(),
        }
    }

    #[test]
    fn the_table_follows_the_networks_and_keeps_their_peers() {
        let t = ensure_transaction(&[guard(7)], &[7, 9]);
        let cmds = t["nftables"].as_array().unwrap();
        // The chain is flushed, never the sets: peers stay.
        assert!(cmds.iter().any(|c| c["flush"]["chain"]["name"] == "input"));
        assert!(!cmds.iter().any(|c| c["flush"].get("set").is_some()));
        assert!(cmds.iter().any(|c| c["add"]["set"]["name"] == "peers_7"));
        assert!(cmds.iter().any(|c| c["delete"]["set"]["name"] == "peers_9"));
        assert!(!cmds.iter().any(|c| c["delete"]["set"]["name"] == "peers_7"));
        let rule = cmds
            .iter()
            .find_map(|c| c["add"].get("rule"))
            .unwrap()
            .to_string();
        for part in ["198.51.100.1", "4789", "\"offset\":96", "@peers_7", "drop"] {
            assert!(rule.contains(part), "{part} not in {rule}");
        }
        let none = ensure_transaction(&[], &[7]);
        assert_eq!(none["nftables"][1]["delete"]["table"]["name"], TABLE);
    }

    #[test]
    fn peers_change_element_by_element() {
        let a: Ipv4Addr = "198.51.100.2".parse().unwrap();
        let b: Ipv4Addr = "198.51.100.3".parse().unwrap();
        let t = change_transaction(7, &[a], &[b]);
        let cmds = t["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(
            cmds[1]["delete"]["element"]["elem"],
            json!(["198.51.100.3"])
        );
        assert_eq!(cmds[2]["add"]["element"]["elem"], json!(["198.51.100.2"]));
    }
}

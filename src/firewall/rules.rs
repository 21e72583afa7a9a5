//! Rendering the model into nftables JSON (libnftables-json(5)).

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::model::{Network, State};

/// The one table nsnet owns.
pub const TABLE: &str = "nsnet";
const FAMILY: &str = "inet";
const POSTROUTING: &str = "postrouting";
const FORWARD: &str = "forward";
/// `srcnat` priority; numeric because nft 1.0.6 rejects named priorities in
/// some inet-table contexts.
const PRIO_SRCNAT: i32 = 100;
const PRIO_FILTER: i32 = 0;

/// The whole `inet nsnet` table for `state`, as one transaction that
/// replaces whatever the table held. `add` before `delete` makes the delete
/// valid when the table does not exist yet; with no networks, the table is
/// removed and the ruleset is as before nsnet ran.
pub fn render(state: &State) -> Value {
    let table = json!({"family": FAMILY, "name": TABLE});
    let mut cmds = vec![
        json!({"add": {"table": table}}),
        json!({"delete": {"table": table}}),
    ];
    if state.networks.is_empty() {
        return json!({"nftables": cmds});
    }
    cmds.push(json!({"add": {"table": table}}));
    cmds.push(chain(POSTROUTING, "nat", "postrouting", PRIO_SRCNAT));
    cmds.push(chain(FORWARD, "filter", "forward", PRIO_FILTER));
    // Connections to published ports (DNAT) cross networks on purpose.
    cmds.push(rule(
        FORWARD,
        "nsnet: published ports",
        vec![
            json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
            json!({"accept": null}),
        ],
    ));
    let bridges: Vec<&str> = state.networks.values().map(|n| n.bridge.as_str()).collect();
    for net in state.networks.values() {
        cmds.extend(network_rules(net, &bridges));
    }
    json!({"nftables": cmds})
}

/// `{ "a", "b" }`: an anonymous set of interface names.
fn name_set(names: &[&str]) -> Value {
    if names.len() == 1 {
        json!(names[0])
    } else {
        json!({"set": names})
    }
}

fn chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {
        "family": FAMILY, "table": TABLE, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    }}})
}

fn rule(chain: &str, comment: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {
        "family": FAMILY, "table": TABLE, "chain": chain,
        "comment": comment, "expr": expr
    }}})
}

fn ifname_match(key: &str, op: &str, name: &str) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": name}})
}

fn saddr_match(subnet: &IpNet) -> Value {
    let proto = if subnet.addr().is_ipv4() { "ip" } else { "ip6" };
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": proto, "field": "saddr"}},
        "right": {"prefix": {"addr": subnet.network().to_string(), "len": subnet.prefix_len()}}}})
}

fn network_rules(net: &Network, bridges: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    let comment = format!("nsnet network {}", net.name);
    let others: Vec<&str> = bridges
        .iter()
        .copied()
        .filter(|b| *b != net.bridge)
        .collect();
    if net.isolate && !others.is_empty() && !net.internal {
        // Isolation: nothing is forwarded between this bridge and another
        // nsnet bridge, in either direction (so one isolated side is
        // enough). Internal networks drop all of it below anyway.
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                ifname_match("iifname", "==", &net.bridge),
                json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": name_set(&others)}}),
                json!({"drop": null}),
            ],
        ));
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": name_set(&others)}}),
                ifname_match("oifname", "==", &net.bridge),
                json!({"drop": null}),
            ],
        ));
    }
    if net.internal {
        // Internal: nothing is forwarded into or out of the bridge; traffic
        // between its own ports is bridged and never reaches this hook
        // unless br_netfilter hands it over, so allow bridge to bridge.
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                ifname_match("iifname", "==", &net.bridge),
                ifname_match("oifname", "!=", &net.bridge),
                json!({"drop": null}),
            ],
        ));
        out.push(rule(
            FORWARD,
            &comment,
            vec![
                ifname_match("oifname", "==", &net.bridge),
                ifname_match("iifname", "!=", &net.bridge),
                json!({"drop": null}),
            ],
        ));
        return out;
    }
    if net.masquerade {
        // Traffic from the subnet that leaves through any interface but the
        // bridge takes the address of that interface, as Docker does.
        for s in &net.subnets {
            out.push(rule(
                POSTROUTING,
                &comment,
                vec![
                    saddr_match(&s.cidr),
                    ifname_match("oifname", "!=", &net.bridge),
                    json!({"masquerade": null}),
                ],
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnets: &[&str], internal: bool, masquerade: bool) -> Network {
        Network {
            internal,
            masquerade,
            ..crate::model::test_network(name, &format!("br-{name}"), subnets)
        }
    }

    #[test]
    fn empty_state_removes_the_table() {
        insta::assert_json_snapshot!(render(&State::default()));
    }

    #[test]
    fn option_matrix() {
        let mut state = State::default();
        for n in [
            net("dual", &["172.16.0.0/16", "fd00:1::/64"], false, true),
            net("nonat", &["10.1.0.0/24"], false, false),
            net("internal", &["10.2.0.0/24"], true, true),
            Network {
                isolate: false,
                ..net("open", &["10.3.0.0/24"], false, true)
            },
        ] {
            state.networks.insert(n.name.clone(), n);
        }
        insta::assert_json_snapshot!(render(&state));
    }
}

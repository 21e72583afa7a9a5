//! Firewall drift: nsnet's table as nft lists it against the table the
//! record calls for, as typed differences (`TableDrift`); `check` turns
//! them into findings and `up` into a repair. Reads listings, renders
//! nothing of its own: the expected table is `rules`'.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::rules::{elements, structure, FORWARD, OUTPUT, POSTROUTING, PREROUTING, RAW_PREROUTING};
use crate::model::State;

/// One way nsnet's live table differs from the one the record calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableDrift {
    TableMissing,
    /// The table exists, but no network wants it.
    TableWithoutNetworks,
    ChainMissing {
        chain: String,
    },
    /// A base chain's type, hook, priority or policy was changed.
    ChainDiffers {
        chain: String,
        key: &'static str,
        live: String,
        wanted: String,
    },
    ForeignChain {
        chain: String,
    },
    RulesMissing {
        chain: &'static str,
        count: usize,
    },
    ForeignRules {
        chain: &'static str,
        count: usize,
    },
    RulesOutOfOrder {
        chain: &'static str,
    },
    MapMissing {
        map: String,
    },
    /// Published ports missing from a map.
    ElementsMissing {
        map: String,
        count: usize,
    },
    ForeignElements {
        map: String,
        count: usize,
    },
}

impl fmt::Display for TableDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TableDrift::*;
        let table = super::rules::TABLE;
        match self {
            TableMissing => write!(f, "nftables table inet {table} is missing"),
            TableWithoutNetworks => write!(
                f,
                "nftables table inet {table} exists but nsnet has no network"
            ),
            ChainMissing { chain } => write!(f, "chain {chain} is missing"),
            ChainDiffers {
                chain,
                key,
                live,
                wanted,
            } => write!(f, "chain {chain}: {key} is {live} instead of {wanted}"),
            ForeignChain { chain } => write!(f, "chain {chain} was not made by nsnet"),
            RulesMissing { chain, count } => write!(f, "chain {chain}: {count} rule(s) missing"),
            ForeignRules { chain, count } => {
                write!(f, "chain {chain}: {count} rule(s) not made by nsnet")
            }
            RulesOutOfOrder { chain } => write!(f, "chain {chain}: rules are out of order"),
            MapMissing { map } => write!(f, "map {map} is missing"),
            ElementsMissing { map, count } => {
                write!(f, "map {map}: {count} published port(s) missing")
            }
            ForeignElements { map, count } => {
                write!(f, "map {map}: {count} element(s) not made by nsnet")
            }
        }
    }
}

/// Sorts the members of anonymous sets, which nft may list in another
/// order than they were given.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, val) in m {
                let mut val = normalized(val);
                if k == "set" {
                    if let Value::Array(items) = &mut val {
                        items.sort_by_key(|i| i.to_string());
                    }
                }
                out.insert(k.clone(), val);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// Differences between the table nsnet expects for `state` and the one nft
/// lists (`None`: no table).
pub fn drift(state: &State, live: Option<&Value>) -> Vec<TableDrift> {
    let state = &*state.bridged();
    let mut out = structure_drift(state, live);
    if let Some(live) = live {
        if !state.networks.is_empty() {
            out.extend(element_drift(state, live));
        }
    }
    out
}

/// `drift` without map elements: what a terse listing (`nft -t`) can show.
fn structure_drift(state: &State, live: Option<&Value>) -> Vec<TableDrift> {
    let mut out = Vec::new();
    let Some(live) = live else {
        if !state.networks.is_empty() {
            out.push(TableDrift::TableMissing);
        }
        return out;
    };
    if state.networks.is_empty() {
        out.push(TableDrift::TableWithoutNetworks);
        return out;
    }
    let items = live["nftables"].as_array().cloned().unwrap_or_default();
    let objects =
        |kind: &str| -> Vec<Value> { items.iter().filter_map(|i| i.get(kind).cloned()).collect() };
    let (live_chains, live_rules) = (objects("chain"), objects("rule"));
    let expected = structure(state);
    let added = |kind: &str| -> Vec<Value> {
        expected
            .iter()
            .filter_map(|c| c["add"].get(kind).cloned())
            .collect()
    };
    for chain in added("chain") {
        let name = chain["name"].as_str().unwrap_or_default();
        match live_chains.iter().find(|c| c["name"] == chain["name"]) {
            None => out.push(TableDrift::ChainMissing { chain: name.into() }),
            Some(c) => {
                for key in ["type", "hook", "prio", "policy"] {
                    if c[key] != chain[key] {
                        out.push(TableDrift::ChainDiffers {
                            chain: name.into(),
                            key,
                            live: c[key].to_string(),
                            wanted: chain[key].to_string(),
                        });
                    }
                }
            }
        }
    }
    for chain in &live_chains {
        let name = chain["name"].as_str().unwrap_or_default();
        if !added("chain").iter().any(|c| c["name"] == chain["name"]) {
            out.push(TableDrift::ForeignChain { chain: name.into() });
        }
    }
    let rules_of = |rules: &[Value], chain: &str| -> Vec<Value> {
        rules
            .iter()
            .filter(|r| r["chain"] == chain)
            .map(|r| normalized(&r["expr"]))
            .collect()
    };
    let expected_rules = added("rule");
    for chain in [RAW_PREROUTING, PREROUTING, OUTPUT, POSTROUTING, FORWARD] {
        let want = rules_of(&expected_rules, chain);
        let have = rules_of(&live_rules, chain);
        let missing = want.iter().filter(|w| !have.contains(w)).count();
        let foreign = have.iter().filter(|h| !want.contains(h)).count();
        if missing > 0 {
            out.push(TableDrift::RulesMissing {
                chain,
                count: missing,
            });
        }
        if foreign > 0 {
            out.push(TableDrift::ForeignRules {
                chain,
                count: foreign,
            });
        }
        if missing == 0 && foreign == 0 && want != have {
            out.push(TableDrift::RulesOutOfOrder { chain });
        }
    }
    out
}

fn element_drift(state: &State, live: &Value) -> Vec<TableDrift> {
    let mut out = Vec::new();
    let live_maps: Vec<Value> = live["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("map").or_else(|| i.get("set")).cloned())
        .collect();
    let want_elems = elements(state);
    for (map, want) in &want_elems {
        let Some(m) = live_maps.iter().find(|m| m["name"] == *map) else {
            out.push(TableDrift::MapMissing {
                map: map.to_string(),
            });
            continue;
        };
        let have: BTreeSet<String> = m["elem"]
            .as_array()
            .map(|a| a.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        let missing = want.difference(&have).count();
        let foreign = have.difference(want).count();
        if missing > 0 {
            out.push(TableDrift::ElementsMissing {
                map: map.to_string(),
                count: missing,
            });
        }
        if foreign > 0 {
            out.push(TableDrift::ForeignElements {
                map: map.to_string(),
                count: foreign,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::rules::render_listing;
    use super::*;
    use serde_json::json;

    fn listed(state: &State) -> Value {
        render_listing(state)
    }

    fn state() -> State {
        let mut s = State::default();
        let mut n = crate::model::test_network("a", "br-a", &["10.0.0.0/24"]);
        n.attachments
            .push(std::sync::Arc::new(crate::model::Attachment {
                addresses: vec!["10.0.0.2/24".parse().unwrap()],
                ports: vec!["8080:80".parse().unwrap()],
                ..crate::model::test_attachment("x")
            }));
        s.networks.insert("a".into(), n);
        s.networks.insert(
            "b".into(),
            crate::model::test_network("b", "br-b", &["10.1.0.0/24"]),
        );
        s
    }

    #[test]
    fn a_fresh_table_has_no_drift() {
        let s = state();
        assert_eq!(drift(&s, Some(&listed(&s))), vec![]);
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let s = state();
        assert_eq!(drift(&s, None), vec![TableDrift::TableMissing]);
        assert_eq!(
            TableDrift::TableMissing.to_string(),
            "nftables table inet nsnet is missing"
        );
        let mut l = listed(&s);
        let items = l["nftables"].as_array_mut().unwrap();
        // A flushed forward chain, a foreign rule, a lost port.
        items.retain(|i| i.get("rule").is_none_or(|r| r["chain"] != "forward"));
        items.push(json!({"rule": {"chain": "postrouting", "expr": [{"accept": null}]}}));
        for i in items.iter_mut() {
            if i.get("map").is_some_and(|m| m["name"] == "ports4_any_dest") {
                i["map"].as_object_mut().unwrap().remove("elem");
            }
        }
        let d = drift(&s, Some(&l));
        let want = [
            TableDrift::RulesMissing {
                chain: "forward",
                count: 7,
            },
            TableDrift::ForeignRules {
                chain: "postrouting",
                count: 1,
            },
            TableDrift::ElementsMissing {
                map: "ports4_any_dest".into(),
                count: 1,
            },
        ];
        for w in &want {
            assert!(d.contains(w), "{w:?} not in {d:?}");
        }
        assert_eq!(d.len(), want.len(), "{d:?}");
    }
}

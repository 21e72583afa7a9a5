//! Walking one packet through a ruleset as `nft -j list ruleset` shows it:
//! every base chain of a hook, by priority, in every table that applies to
//! the packet's family (nsnet's and everyone else's), with the verdict
//! each gives and the rule (or policy) that gave it. Pure over the JSON;
//! `api::trace` gathers the ruleset and explains the outcome.
//!
//! What it evaluates is what the tables of nsnet, Docker (iptables-nft),
//! firewalld and hand-written rulesets use to accept or drop: interface
//! names, addresses and prefixes, protocols and ports, connection state,
//! named sets, jumps, gotos and returns. A match it cannot evaluate (fib,
//! marks, rates...) is taken as not matching, and named in the chain's
//! `unsure` list when its rule would have given a verdict: the trace then
//! says it may be wrong there.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// The netfilter hooks of the ip, ip6 and inet families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    Tcp,
    Udp,
    Icmp,
}

impl L4 {
    fn names(self, v4: bool) -> &'static [&'static str] {
        match (self, v4) {
            (L4::Tcp, _) => &["tcp", "6"],
            (L4::Udp, _) => &["udp", "17"],
            (L4::Icmp, true) => &["icmp", "1"],
            (L4::Icmp, false) => &["ipv6-icmp", "icmpv6", "58"],
        }
    }
}

/// The packet as a hook sees it: a new connection's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub sport: u16,
    /// The destination port (for ICMP: none, 0).
    pub dport: u16,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// A DNAT rule changed its destination (`ct status dnat`).
    pub dnat: bool,
}

impl Packet {
    pub fn v4(&self) -> bool {
        self.dst.is_ipv4()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
}

/// What gave a chain's verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum By {
    /// A rule: the chain it is in (a base chain's or one it jumped to),
    /// its handle and comment.
    Rule {
        chain: String,
        handle: Option<u64>,
        comment: Option<String>,
    },
    /// The base chain's policy (no rule decided).
    Policy,
}

/// One base chain the packet met.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainOutcome {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub hook: Hook,
    pub priority: i64,
    pub verdict: Verdict,
    pub by: By,
    /// Matches the walk could not evaluate, in rules that would have
    /// given a verdict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsure: Vec<String>,
}

impl ChainOutcome {
    pub fn stops(&self) -> bool {
        self.verdict != Verdict::Accept
    }
}

/// A ruleset, indexed: chains with their rules, and sets with elements.
pub struct Ruleset<'a> {
    chains: BTreeMap<(String, String, String), &'a Value>,
    rules: BTreeMap<(String, String, String), Vec<&'a Value>>,
    sets: BTreeMap<(String, String, String), &'a Value>,
}

fn key(v: &Value) -> (String, String, String) {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    (s("family"), s("table"), s("name"))
}

impl<'a> Ruleset<'a> {
    pub fn new(listing: &'a Value) -> Ruleset<'a> {
        let mut r = Ruleset {
            chains: BTreeMap::new(),
            rules: BTreeMap::new(),
            sets: BTreeMap::new(),
        };
        for item in listing["nftables"].as_array().into_iter().flatten() {
            if let Some(c) = item.get("chain") {
                r.chains.insert(key(c), c);
            } else if let Some(rule) = item.get("rule") {
                let s = |k: &str| rule[k].as_str().unwrap_or_default().to_string();
                r.rules
                    .entry((s("family"), s("table"), s("chain")))
                    .or_default()
                    .push(rule);
            } else if let Some(set) = item.get("set").or_else(|| item.get("map")) {
                r.sets.insert(key(set), set);
            }
        }
        r
    }

    /// Every base chain of `hook` that applies to the packet's family, by
    /// priority, each with its verdict; the walk ends at the first that
    /// drops or rejects.
    #[cfg(test)]
    pub fn walk(&self, hook: Hook, pkt: &Packet) -> Vec<ChainOutcome> {
        self.walk_filtered(hook, pkt, |_| true)
    }

    /// `walk`, over the base chains `keep` accepts (by their listing).
    pub fn walk_filtered(
        &self,
        hook: Hook,
        pkt: &Packet,
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<ChainOutcome> {
        let families: &[&str] = if pkt.v4() {
            &["ip", "inet"]
        } else {
            &["ip6", "inet"]
        };
        let mut bases: Vec<(&(String, String, String), &Value)> = self
            .chains
            .iter()
            .filter(|((family, _, _), c)| {
                families.contains(&family.as_str()) && c["hook"] == hook.name() && keep(c)
            })
            .map(|(k, c)| (k, *c))
            .collect();
        bases.sort_by_key(|(_, c)| c["prio"].as_i64().unwrap_or(0));
        let mut out = Vec::new();
        for ((family, table, name), c) in bases {
            let mut unsure = Vec::new();
            let decided = self.run_chain(family, table, name, pkt, &mut unsure, 0);
            let (verdict, by) = match decided {
                Some(v) => v,
                None => {
                    let policy = match c["policy"].as_str() {
                        Some("drop") => Verdict::Drop,
                        _ => Verdict::Accept,
                    };
                    (policy, By::Policy)
                }
            };
            let outcome = ChainOutcome {
                family: family.clone(),
                table: table.clone(),
                chain: name.clone(),
                hook,
                priority: c["prio"].as_i64().unwrap_or(0),
                verdict,
                by,
                unsure,
            };
            let stop = outcome.stops();
            out.push(outcome);
            if stop {
                break;
            }
        }
        out
    }

    /// Whether the table has a chain of that name.
    pub fn has_chain(&self, family: &str, table: &str, name: &str) -> bool {
        self.chains
            .contains_key(&(family.to_string(), table.to_string(), name.to_string()))
    }

    /// The verdict of a chain's rules, `None` when none gave one (a
    /// return, or the end of the chain).
    fn run_chain(
        &self,
        family: &str,
        table: &str,
        chain: &str,
        pkt: &Packet,
        unsure: &mut Vec<String>,
        depth: usize,
    ) -> Option<(Verdict, By)> {
        if depth > 16 {
            return None;
        }
        let k = (family.to_string(), table.to_string(), chain.to_string());
        for rule in self.rules.get(&k).into_iter().flatten() {
            match self.run_rule(family, table, chain, rule, pkt, unsure, depth) {
                Step::Next => continue,
                Step::Return => return None,
                Step::Verdict(v, by) => return Some((v, by)),
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn run_rule(
        &self,
        family: &str,
        table: &str,
        chain: &str,
        rule: &Value,
        pkt: &Packet,
        unsure: &mut Vec<String>,
        depth: usize,
    ) -> Step {
        let by = || By::Rule {
            chain: chain.to_string(),
            handle: rule["handle"].as_u64(),
            comment: rule["comment"].as_str().map(str::to_string),
        };
        let mut doubt: Option<String> = None;
        for e in rule["expr"].as_array().into_iter().flatten() {
            if let Some(m) = e.get("match") {
                match self.matches(family, table, m, pkt) {
                    Some(true) => continue,
                    Some(false) => return Step::Next,
                    None => {
                        doubt = Some(m.to_string());
                        continue;
                    }
                }
            }
            let verdict = if e.get("accept").is_some() {
                Some(Verdict::Accept)
            } else if e.get("drop").is_some() {
                Some(Verdict::Drop)
            } else if e.get("reject").is_some() {
                Some(Verdict::Reject)
            } else if ["dnat", "snat", "masquerade", "redirect"]
                .iter()
                .any(|k| e.get(*k).is_some())
            {
                // A NAT statement ends the nat chain for the packet.
                Some(Verdict::Accept)
            } else {
                None
            };
            if let Some(v) = verdict {
                if let Some(d) = doubt {
                    unsure.push(format!("chain {chain}: {d}"));
                    return Step::Next;
                }
                return Step::Verdict(v, by());
            }
            if e.get("return").is_some() {
                if doubt.is_some() {
                    return Step::Next;
                }
                return Step::Return;
            }
            let target = e
                .get("jump")
                .or_else(|| e.get("goto"))
                .and_then(|j| j["target"].as_str());
            if let Some(t) = target {
                if let Some(d) = doubt.take() {
                    unsure.push(format!("chain {chain}: {d}"));
                    return Step::Next;
                }
                if let Some(v) = self.run_chain(family, table, t, pkt, unsure, depth + 1) {
                    return Step::Verdict(v.0, v.1);
                }
                if e.get("goto").is_some() {
                    return Step::Return;
                }
                return Step::Next;
            }
        }
        Step::Next
    }

    /// Whether a `match` holds; `None` where the walk cannot tell.
    fn matches(&self, family: &str, table: &str, m: &Value, pkt: &Packet) -> Option<bool> {
        let op = m["op"].as_str().unwrap_or("==");
        let left = self.left_value(&m["left"], pkt)?;
        let hit = match &m["right"] {
            Value::String(s) if s.starts_with('@') => {
                let set = self
                    .sets
                    .get(&(family.into(), table.into(), s[1..].into()))?;
                let elems = set["elem"].as_array().cloned().unwrap_or_default();
                elems.iter().any(|el| same(&left, el))
            }
            Value::Object(o) if o.contains_key("set") => o["set"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|el| same(&left, el)),
            right => same(&left, right),
        };
        match op {
            "==" | "in" => Some(hit),
            "!=" => Some(!hit),
            _ => None,
        }
    }

    /// The packet's value for a match's left side.
    fn left_value(&self, left: &Value, pkt: &Packet) -> Option<Left> {
        if let Some(meta) = left.get("meta") {
            return match meta["key"].as_str()? {
                "iifname" => Some(Left::Text(pkt.iif.clone().unwrap_or_default())),
                "oifname" => Some(Left::Text(pkt.oif.clone().unwrap_or_default())),
                "l4proto" => Some(Left::Names(pkt.l4.names(pkt.v4()))),
                "nfproto" => Some(Left::Names(if pkt.v4() { &["ipv4"] } else { &["ipv6"] })),
                _ => None,
            };
        }
        if let Some(p) = left.get("payload") {
            let proto = p["protocol"].as_str()?;
            let field = p["field"].as_str()?;
            return match (proto, field) {
                ("ip", _) if !pkt.v4() => Some(Left::Absent),
                ("ip6", _) if pkt.v4() => Some(Left::Absent),
                ("ip" | "ip6", "saddr") => Some(Left::Addr(pkt.src)),
                ("ip" | "ip6", "daddr") => Some(Left::Addr(pkt.dst)),
                ("ip", "protocol") | ("ip6", "nexthdr") => {
                    Some(Left::Names(pkt.l4.names(pkt.v4())))
                }
                ("tcp", _) if pkt.l4 != L4::Tcp => Some(Left::Absent),
                ("udp", _) if pkt.l4 != L4::Udp => Some(Left::Absent),
                ("icmp" | "icmpv6", "type") if pkt.l4 == L4::Icmp => {
                    Some(Left::Names(&["echo-request", "8", "128"]))
                }
                ("icmp" | "icmpv6", _) => Some(Left::Absent),
                ("tcp" | "udp" | "th", "dport") if pkt.l4 != L4::Icmp => {
                    Some(Left::Number(pkt.dport.into()))
                }
                ("tcp" | "udp" | "th", "sport") if pkt.l4 != L4::Icmp => {
                    Some(Left::Number(pkt.sport.into()))
                }
                ("th", _) => Some(Left::Absent),
                _ => None,
            };
        }
        if let Some(ct) = left.get("ct") {
            return match ct["key"].as_str()? {
                "state" => Some(Left::Names(&["new"])),
                "status" if pkt.dnat => Some(Left::Names(&["dnat"])),
                "status" => Some(Left::Names(&[])),
                _ => None,
            };
        }
        if let Some(parts) = left.get("concat").and_then(Value::as_array) {
            let values = parts
                .iter()
                .map(|p| self.left_value(p, pkt))
                .collect::<Option<Vec<_>>>()?;
            return Some(Left::Concat(values));
        }
        None
    }
}

enum Step {
    Next,
    Return,
    Verdict(Verdict, By),
}

/// A packet's value for a match.
#[derive(Debug, Clone)]
enum Left {
    Text(String),
    Addr(IpAddr),
    Number(u64),
    /// Any of these names (a protocol by name or number, flags).
    Names(&'static [&'static str]),
    Concat(Vec<Left>),
    /// The header is not in this packet: no value matches.
    Absent,
}

/// Whether the packet's value is the right side's (a value, a prefix, a
/// range, a wildcard name, a list of flags, a concatenation).
fn same(left: &Left, right: &Value) -> bool {
    match (left, right) {
        (Left::Absent, _) => false,
        (Left::Text(t), Value::String(r)) => match r.strip_suffix('*') {
            Some(prefix) => t.starts_with(prefix),
            None => t == r,
        },
        (Left::Addr(a), Value::String(r)) => r
            .parse::<IpAddr>()
            .map(|x| x == *a)
            .or_else(|_| r.parse::<IpNet>().map(|n| n.contains(a)))
            .unwrap_or(false),
        (Left::Addr(a), Value::Object(o)) => {
            if let Some(p) = o.get("prefix") {
                let net = format!("{}/{}", p["addr"].as_str().unwrap_or(""), p["len"]);
                return net.parse::<IpNet>().is_ok_and(|n| n.contains(a));
            }
            if let Some([lo, hi]) = o.get("range").and_then(Value::as_array).map(Vec::as_slice) {
                let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<IpAddr>().ok());
                return matches!((parse(lo), parse(hi)), (Some(l), Some(h)) if l <= *a && *a <= h);
            }
            false
        }
        (Left::Number(n), Value::Number(r)) => r.as_u64() == Some(*n),
        (Left::Number(n), Value::Object(o)) => {
            match o.get("range").and_then(Value::as_array).map(Vec::as_slice) {
                Some([lo, hi]) => lo.as_u64() <= Some(*n) && Some(*n) <= hi.as_u64(),
                _ => false,
            }
        }
        (Left::Names(names), Value::String(r)) => names.contains(&r.as_str()),
        (Left::Names(names), Value::Number(r)) => names.contains(&r.to_string().as_str()),
        (Left::Names(names), Value::Array(flags)) => flags
            .iter()
            .any(|f| f.as_str().is_some_and(|f| names.contains(&f))),
        (Left::Concat(parts), Value::Object(o)) => {
            let Some(rs) = o.get("concat").and_then(Value::as_array) else {
                // A map element: [key, value].
                return false;
            };
            parts.len() == rs.len() && parts.iter().zip(rs).all(|(l, r)| same(l, r))
        }
        (Left::Concat(_), Value::Array(pair)) => pair.first().is_some_and(|k| same(left, k)),
        (_, Value::Object(o)) if o.contains_key("elem") => same(left, &o["elem"]["val"]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pkt(iif: &str, oif: &str, dport: u16) -> Packet {
        Packet {
            src: "10.1.0.2".parse().unwrap(),
            dst: "10.2.0.2".parse().unwrap(),
            l4: L4::Tcp,
            sport: 40000,
            dport,
            iif: Some(iif.into()),
            oif: Some(oif.into()),
            dnat: false,
        }
    }

    fn chain(family: &str, table: &str, name: &str, hook: &str, prio: i64, policy: &str) -> Value {
        json!({"chain": {"family": family, "table": table, "name": name, "hook": hook, "prio": prio, "policy": policy, "type": "filter"}})
    }

    fn rule(family: &str, table: &str, chain: &str, handle: u64, expr: Value) -> Value {
        json!({"rule": {"family": family, "table": table, "chain": chain, "handle": handle, "expr": expr}})
    }

    /// A table as Docker's iptables-nft makes it, and one of nsnet's shape.
    fn ruleset() -> Value {
        json!({"nftables": [
            chain("ip", "filter", "FORWARD", "forward", 0, "drop"),
            rule("ip", "filter", "FORWARD", 5, json!([{"jump": {"target": "DOCKER-USER"}}])),
            json!({"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER"}}),
            rule("ip", "filter", "DOCKER-USER", 6, json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "front"}},
                {"counter": {"packets": 0, "bytes": 0}},
                {"accept": null}])),
            rule("ip", "filter", "DOCKER-USER", 7, json!([{"return": null}])),
            chain("inet", "nsnet", "forward", "forward", -10, "accept"),
            rule("inet", "nsnet", "forward", 9, json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "front"}},
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": {"set": ["back", "db"]}}},
                {"drop": null}])),
            json!({"set": {"family": "inet", "table": "nsnet", "name": "open", "elem": [{"concat": ["10.2.0.2", "tcp", 5432]}]}}),
            rule("inet", "nsnet", "forward", 10, json!([
                {"match": {"op": "==", "left": {"concat": [
                    {"payload": {"protocol": "ip", "field": "daddr"}},
                    {"meta": {"key": "l4proto"}},
                    {"payload": {"protocol": "th", "field": "dport"}}]}, "right": "@open"}},
                {"accept": null}])),
            rule("inet", "nsnet", "forward", 11, json!([
                {"match": {"op": "==", "left": {"fib": {"flags": ["saddr", "iif"], "result": "oif"}}, "right": false}},
                {"drop": null}])),
        ]})
    }

    #[test]
    fn chains_run_by_priority_and_the_first_drop_ends_the_walk() {
        let listing = ruleset();
        let r = Ruleset::new(&listing);
        let out = r.walk(Hook::Forward, &pkt("front", "back", 80));
        assert_eq!(out.len(), 1, "nsnet's chain (-10) first, and it drops");
        assert_eq!(out[0].verdict, Verdict::Drop);
        assert!(matches!(
            out[0].by,
            By::Rule {
                handle: Some(9),
                ..
            }
        ));
        // Docker's policy drops what its user chain does not accept.
        let out = r.walk(Hook::Forward, &pkt("web", "back", 80));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].verdict, Verdict::Accept);
        assert_eq!(out[0].by, By::Policy);
        assert!(!out[0].unsure.is_empty(), "the fib match is named");
        assert_eq!(
            (out[1].table.as_str(), out[1].verdict),
            ("filter", Verdict::Drop)
        );
        assert_eq!(out[1].by, By::Policy);
        // A jump that accepts: the verdict comes from the user chain.
        let out = r.walk(Hook::Forward, &pkt("front", "web", 80));
        assert_eq!(out[1].verdict, Verdict::Accept);
        assert!(matches!(&out[1].by, By::Rule { chain, .. } if chain == "DOCKER-USER"));
        // A named set of concatenations.
        let out = r.walk(Hook::Forward, &pkt("web", "back", 5432));
        assert!(
            matches!(
                out[0].by,
                By::Rule {
                    handle: Some(10),
                    ..
                }
            ),
            "{out:?}"
        );
    }

    #[test]
    fn families_and_absent_headers_do_not_match() {
        let listing = ruleset();
        let r = Ruleset::new(&listing);
        let mut p = pkt("web", "back", 80);
        p.src = "fd00::2".parse().unwrap();
        p.dst = "fd00:1::2".parse().unwrap();
        let out = r.walk(Hook::Forward, &p);
        assert!(
            out.iter().all(|c| c.family == "inet"),
            "ip tables skip IPv6"
        );
        p.l4 = L4::Icmp;
        assert!(!same(&Left::Absent, &json!(80)));
        assert_eq!(r.walk(Hook::Input, &p), Vec::new());
    }
}

//! Lab objects, as containerlab and Mininet users know them: point-to-point
//! links between two named namespaces (a veth pair, no bridge), switches
//! (a bridge in a namespace of its own, whose ports are links' ends),
//! namespaces that forward and carry static routes, and link impairment (a
//! netem qdisc on an interface). Parsing and validation of their values;
//! pure.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::names;
use super::nsref;
use super::Rejection;

/// One end of a link: `NAMESPACE:IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint {
    pub namespace: String,
    pub ifname: String,
}

impl FromStr for Endpoint {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Endpoint, Rejection> {
        let bad = |reason: String| Rejection::InvalidEndpoint {
            value: s.to_string(),
            reason,
        };
        let (ns, ifname) = s
            .split_once(':')
            .ok_or_else(|| bad("expected NAMESPACE:INTERFACE, e.g. r1:eth1".into()))?;
        nsref::validate_name(ns).map_err(|e| bad(e.to_string()))?;
        names::validate_ifname(ifname).map_err(|e| bad(e.to_string()))?;
        if ifname == "lo" {
            return Err(bad("lo is the namespace's loopback".into()));
        }
        Ok(Endpoint {
            namespace: ns.to_string(),
            ifname: ifname.to_string(),
        })
    }
}

impl TryFrom<String> for Endpoint {
    type Error = Rejection;
    fn try_from(s: String) -> Result<Endpoint, Rejection> {
        s.parse()
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.ifname)
    }
}

/// The word that makes a link end a switch's: `network:s1`.
pub const SWITCH_PREFIX: &str = "network:";

/// The bridge inside a switch's namespace; its ports are `eth1`, `eth2`...
pub const SWITCH_BRIDGE: &str = "br0";

/// One end of a link as asked for: an interface of a namespace, or a new
/// port of a switch (`network:NAME`), which the plan names (`NAME:ethN`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkEnd {
    Iface(Endpoint),
    Switch(String),
}

impl LinkEnd {
    /// The namespace the end is in (a switch's is named after it).
    pub fn namespace(&self) -> &str {
        match self {
            LinkEnd::Iface(e) => &e.namespace,
            LinkEnd::Switch(s) => s,
        }
    }

    pub fn iface(&self) -> Option<&Endpoint> {
        match self {
            LinkEnd::Iface(e) => Some(e),
            LinkEnd::Switch(_) => None,
        }
    }
}

/// The name of a switch's port for a link whose other end is `peer`:
/// `NS-IF` for a namespace's interface, the switch's name for another
/// switch (two switches share at most one link), so that the port says
/// what it leads to (`nsnet capture s1:h1-eth0`); a hash where that does
/// not make an interface name. A pure function of the link, so a file's
/// plan and the record agree on it.
pub fn switch_port(peer: &LinkEnd) -> String {
    let (candidate, parts) = match peer {
        LinkEnd::Iface(e) => (
            format!("{}-{}", e.namespace, e.ifname),
            [e.namespace.as_str(), e.ifname.as_str()],
        ),
        LinkEnd::Switch(s) => (s.clone(), [s.as_str(), ""]),
    };
    let usable = names::validate_ifname(&candidate).is_ok()
        && candidate != SWITCH_BRIDGE
        && candidate != "lo";
    if usable {
        candidate
    } else {
        format!("p-{:08x}", names::stable_hash(&parts))
    }
}

impl FromStr for LinkEnd {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<LinkEnd, Rejection> {
        let Some(name) = s.strip_prefix(SWITCH_PREFIX) else {
            return s.parse().map(LinkEnd::Iface);
        };
        nsref::validate_name(name).map_err(|e| Rejection::InvalidEndpoint {
            value: s.to_string(),
            reason: e.to_string(),
        })?;
        Ok(LinkEnd::Switch(name.to_string()))
    }
}

impl fmt::Display for LinkEnd {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LinkEnd::Iface(e) => e.fmt(f),
            LinkEnd::Switch(s) => write!(f, "{SWITCH_PREFIX}{s}"),
        }
    }
}

/// A point-to-point link: a veth pair with one end in each namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub ends: [Endpoint; 2],
    /// The addresses of each end (either list may be empty).
    #[serde(default)]
    pub addresses: [Vec<IpNet>; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The topology file whose `up` made it; none for the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl Link {
    pub fn has_end(&self, e: &Endpoint) -> bool {
        self.ends.contains(e)
    }

    /// Whether `a` and `b` are its ends, in either order.
    pub fn joins(&self, a: &Endpoint, b: &Endpoint) -> bool {
        (self.ends[0] == *a && self.ends[1] == *b) || (self.ends[0] == *b && self.ends[1] == *a)
    }

    pub fn uses_namespace(&self, ns: &str) -> bool {
        self.ends.iter().any(|e| e.namespace == ns)
    }
}

/// A static route inside a namespace: `DEST via GATEWAY` (`default` is
/// 0.0.0.0/0 or ::/0, by the gateway's family).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Route {
    pub destination: IpNet,
    pub via: IpAddr,
}

impl Route {
    pub fn new(destination: &str, via: &str) -> Result<Route, Rejection> {
        let text = format!("{destination} via {via}");
        let bad = |reason: &str| Rejection::InvalidRoute {
            value: text.clone(),
            reason: reason.to_string(),
        };
        let via: IpAddr = via
            .parse()
            .map_err(|_| bad("the gateway is not an address"))?;
        let destination = if destination == "default" {
            if via.is_ipv4() {
                "0.0.0.0/0".parse().expect("literal")
            } else {
                "::/0".parse().expect("literal")
            }
        } else {
            let net: IpNet = destination
                .parse()
                .or_else(|_| destination.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| bad("the destination is not ADDR/PLEN or default"))?;
            if net.trunc() != net {
                return Err(bad("the destination has host bits set"));
            }
            net
        };
        if destination.addr().is_ipv4() != via.is_ipv4() {
            return Err(bad("destination and gateway are of different families"));
        }
        Ok(Route { destination, via })
    }

    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
    }
}

impl FromStr for Route {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Route, Rejection> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            [dest, "via", gw] => Route::new(dest, gw),
            _ => Err(Rejection::InvalidRoute {
                value: s.to_string(),
                reason: "expected DEST via GATEWAY, e.g. 10.2.0.0/24 via 10.1.12.2".into(),
            }),
        }
    }
}

impl TryFrom<String> for Route {
    type Error = Rejection;
    fn try_from(s: String) -> Result<Route, Rejection> {
        s.parse()
    }
}

impl From<Route> for String {
    fn from(r: Route) -> String {
        r.to_string()
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.is_default() {
            write!(f, "default via {}", self.via)
        } else {
            write!(f, "{} via {}", self.destination, self.via)
        }
    }
}

/// What nsnet set up in a namespace for a lab: forwarding and routes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabNamespace {
    /// nsnet created the namespace and deletes it once nothing uses it.
    pub created: bool,
    #[serde(default)]
    pub forward: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// The topology file that asked for forwarding and routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The namespace is a switch: a bridge (`SWITCH_BRIDGE`) whose ports
    /// are the ends of its links; it goes with its last link.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub switch: bool,
}

/// Link impairment, as a netem qdisc applies it to what an interface
/// sends. Times in microseconds, probabilities in percent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impairment {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_us: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_us: u64,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub loss_pct: f64,
    /// Bits per second; 0 is unlimited.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_bps: u64,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub corrupt_pct: f64,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub duplicate_pct: f64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

impl Impairment {
    /// Nothing to impair.
    pub fn is_none(&self) -> bool {
        *self == Impairment::default()
    }

    /// Sets one parameter from its text (`delay`, `jitter`, `loss`, `rate`,
    /// `corrupt`, `duplicate`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Rejection> {
        match key {
            "delay" => self.delay_us = parse_duration_us(value)?,
            "jitter" => self.jitter_us = parse_duration_us(value)?,
            "loss" => self.loss_pct = parse_percent(value)?,
            "corrupt" => self.corrupt_pct = parse_percent(value)?,
            "duplicate" => self.duplicate_pct = parse_percent(value)?,
            "rate" => self.rate_bps = parse_rate_bps(value)?,
            _ => {
                return Err(Rejection::Unparsable {
                    what: "impairment",
                    value: key.to_string(),
                    expected: "one of delay, jitter, loss, rate, corrupt, duplicate",
                })
            }
        }
        if self.jitter_us > 0 && self.delay_us == 0 {
            return Err(Rejection::OutOfRange {
                what: "jitter",
                value: value.to_string(),
                expected: "jitter needs a delay to vary",
            });
        }
        Ok(())
    }

    /// An impairment from `(key, value)` options as front ends have them
    /// (`set` for each given one); `None` when none is given.
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'static str, Option<&'a String>)>,
    ) -> Result<Option<Impairment>, Rejection> {
        let mut imp = Impairment::default();
        for (key, value) in options {
            if let Some(v) = value {
                imp.set(key, v)?;
            }
        }
        Ok((!imp.is_none()).then_some(imp))
    }

    /// The parameters as `key value` pairs, in tc's words.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.delay_us > 0 {
            out.push(("delay", format_duration(self.delay_us)));
        }
        if self.jitter_us > 0 {
            out.push(("jitter", format_duration(self.jitter_us)));
        }
        for (k, v) in [
            ("loss", self.loss_pct),
            ("corrupt", self.corrupt_pct),
            ("duplicate", self.duplicate_pct),
        ] {
            if v > 0.0 {
                out.push((k, format!("{v}%")));
            }
        }
        if self.rate_bps > 0 {
            out.push(("rate", format_rate(self.rate_bps)));
        }
        out
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let parts: Vec<String> = self
            .describe()
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        write!(f, "{}", parts.join(" "))
    }
}

fn number_and_unit<'a>(
    value: &'a str,
    what: &'static str,
    expected: &'static str,
) -> Result<(f64, &'a str), Rejection> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| Rejection::Unparsable {
        what,
        value: value.to_string(),
        expected,
    })?;
    if !n.is_finite() || n < 0.0 {
        return Err(Rejection::Unparsable {
            what,
            value: value.to_string(),
            expected,
        });
    }
    Ok((n, unit))
}

/// `20ms`, `1.5s`, `500us`: microseconds, at most an hour.
pub fn parse_duration_us(value: &str) -> Result<u64, Rejection> {
    const EXPECTED: &str = "a duration such as 20ms, 500us or 1s";
    let (n, unit) = number_and_unit(value, "duration", EXPECTED)?;
    let scale = match unit {
        "us" | "usec" => 1.0,
        "ms" | "msec" => 1e3,
        "s" | "sec" => 1e6,
        _ => {
            return Err(Rejection::Unparsable {
                what: "duration",
                value: value.to_string(),
                expected: EXPECTED,
            })
        }
    };
    let us = (n * scale).round();
    if us > 3_600e6 {
        return Err(Rejection::OutOfRange {
            what: "duration",
            value: value.to_string(),
            expected: "at most one hour",
        });
    }
    Ok(us as u64)
}

/// `1%`, `0.1%`: between 0 and 100.
pub fn parse_percent(value: &str) -> Result<f64, Rejection> {
    const EXPECTED: &str = "a percentage such as 1% or 0.1%";
    let (n, unit) = number_and_unit(value, "percentage", EXPECTED)?;
    if unit != "%" {
        return Err(Rejection::Unparsable {
            what: "percentage",
            value: value.to_string(),
            expected: EXPECTED,
        });
    }
    if n > 100.0 {
        return Err(Rejection::OutOfRange {
            what: "percentage",
            value: value.to_string(),
            expected: "between 0% and 100%",
        });
    }
    Ok(n)
}

/// `10mbit`, `1gbit`, `512kbit`, `100bit` (tc's units: bits per second,
/// powers of 1000).
pub fn parse_rate_bps(value: &str) -> Result<u64, Rejection> {
    const EXPECTED: &str = "a rate such as 10mbit, 512kbit or 1gbit";
    let (n, unit) = number_and_unit(value, "rate", EXPECTED)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bit" | "bps" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => {
            return Err(Rejection::Unparsable {
                what: "rate",
                value: value.to_string(),
                expected: EXPECTED,
            })
        }
    };
    let bps = (n * scale).round();
    if !(8.0..=1e12).contains(&bps) {
        return Err(Rejection::OutOfRange {
            what: "rate",
            value: value.to_string(),
            expected: "between 8bit and 1000gbit",
        });
    }
    Ok(bps as u64)
}

fn format_duration(us: u64) -> String {
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

fn format_rate(bps: u64) -> String {
    for (unit, scale) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1000)] {
        if bps.is_multiple_of(scale) {
            return format!("{}{unit}", bps / scale);
        }
    }
    format!("{bps}bit")
}

/// Impairments by interface (`NAMESPACE:IFNAME`), as recorded.
pub type Impairments = BTreeMap<Endpoint, ImpairmentRecord>;

/// An impairment nsnet applied, and who asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpairmentRecord {
    #[serde(flatten)]
    pub impairment: Impairment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The interfaces a link between `ends` has, switch ports named.
pub fn resolve_ends(ends: &[LinkEnd; 2]) -> [Endpoint; 2] {
    let end = |i: usize| match &ends[i] {
        LinkEnd::Iface(e) => e.clone(),
        LinkEnd::Switch(s) => Endpoint {
            namespace: s.clone(),
            ifname: switch_port(&ends[1 - i]),
        },
    };
    [end(0), end(1)]
}

impl LinkRequest {
    /// The interfaces the link's ends are, switch ports named.
    pub fn resolved_ends(&self) -> [Endpoint; 2] {
        resolve_ends(&self.ends)
    }
}

/// A link to make.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRequest {
    pub ends: [LinkEnd; 2],
    pub addresses: [Vec<IpNet>; 2],
    pub mtu: Option<u32>,
    pub owner: Option<String>,
    /// Applied to both ends (Mininet's TCLink does the same).
    pub impair: Option<Impairment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_refuse_what_the_kernel_would() {
        let e: Endpoint = "r1:eth1".parse().unwrap();
        assert_eq!(e.to_string(), "r1:eth1");
        for bad in [
            "r1",
            "r1:",
            ":eth1",
            "r1:averyverylongifname",
            "r/1:eth1",
            "r1:lo",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        let s: LinkEnd = "network:s1".parse().unwrap();
        assert_eq!(s, LinkEnd::Switch("s1".into()));
        assert_eq!(s.to_string(), "network:s1");
        assert_eq!(
            "h1:eth0".parse::<LinkEnd>().unwrap(),
            LinkEnd::Iface(Endpoint {
                namespace: "h1".into(),
                ifname: "eth0".into()
            })
        );
        assert!("network:".parse::<LinkEnd>().is_err());
        let port = |peer: &str| switch_port(&peer.parse().unwrap());
        assert_eq!(port("h1:eth0"), "h1-eth0");
        assert_eq!(port("network:s2"), "s2");
        assert_eq!(
            port("averylonghostname:eth0"),
            port("averylonghostname:eth0")
        );
        assert!(port("averylonghostname:eth0").starts_with("p-"));
        assert!(
            port("network:br0").starts_with("p-"),
            "not the bridge's name"
        );
        assert!("network:a/b".parse::<LinkEnd>().is_err());
    }

    #[test]
    fn routes_parse_with_default_and_families() {
        let r: Route = "10.2.0.0/24 via 10.1.12.2".parse().unwrap();
        assert_eq!(r.to_string(), "10.2.0.0/24 via 10.1.12.2");
        let d: Route = "default via fd00::1".parse().unwrap();
        assert!(d.is_default() && d.destination.addr().is_ipv6());
        for bad in [
            "10.2.0.1/24 via 10.1.12.2",
            "10.2.0.0/24 via fd00::1",
            "10.2.0.0/24",
            "x via y",
        ] {
            assert!(bad.parse::<Route>().is_err(), "{bad}");
        }
    }

    #[test]
    fn impairment_values_parse_in_tcs_units() {
        assert_eq!(parse_duration_us("20ms").unwrap(), 20_000);
        assert_eq!(parse_duration_us("1.5s").unwrap(), 1_500_000);
        assert_eq!(parse_percent("0.1%").unwrap(), 0.1);
        assert_eq!(parse_rate_bps("10mbit").unwrap(), 10_000_000);
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("5").is_err());
        assert!(parse_duration_us("20 parsecs").is_err());
        assert!(parse_rate_bps("fast").is_err());
        let mut i = Impairment::default();
        assert!(i.set("jitter", "5ms").is_err(), "jitter without delay");
        i.set("delay", "20ms").unwrap();
        i.set("jitter", "5ms").unwrap();
        i.set("rate", "10mbit").unwrap();
        assert_eq!(i.to_string(), "delay 20ms jitter 5ms rate 10mbit");
    }
}

/// A long-running process `up` started in a node (a `run` command of a
/// topology file), as its runtime file records it: enough to find it again
/// (the pid and its start time, which a reused pid does not share) and to
/// show its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeProcess {
    pub command: String,
    pub pid: i32,
    /// The process's start time in clock ticks since boot (/proc/PID/stat).
    pub start: u64,
    pub log: std::path::PathBuf,
    /// The topology file that asked for it.
    pub owner: String,
}

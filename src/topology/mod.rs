//! Topology files, a front end: a declarative description of networks and
//! namespaces in TOML, parsed once into model requests and validated before
//! anything is applied (every error names the file, line and column of the
//! offending value); `api`'s `up` makes the host match it. A front end:
//! may import `api` and `model`, nothing below.
//!
//! ```toml
//! [networks.mydocker0]
//! subnets = ["172.16.0.0/16"]
//!
//! [namespaces.ns1]
//! dns = ["192.0.2.53"]
//! attach = [{ network = "mydocker0", ip = "172.16.1.1/16", publish = ["8080:80"] }]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

mod lab;

pub use crate::model::topology::{LabSpec, Outcome, Router, Topology};
pub use lab::graph;

use crate::api::{Error, Result};
use crate::model::ports::PortMapping;
use crate::model::rejection::parse_subnet;
use crate::model::{
    ipam, names, nsref, ConnectRequest, CreateRequest, GatewayMode, NsRef, RequestedIp,
    DEFAULT_IFNAME,
};

/// Largest topology file read: a topology is text a person writes.
const MAX_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    networks: BTreeMap<Spanned<String>, NetworkSpec>,
    #[serde(default)]
    namespaces: BTreeMap<Spanned<String>, NamespaceSpec>,
    #[serde(default)]
    links: Vec<Spanned<lab::LinkSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSpec {
    #[serde(default)]
    subnets: Vec<Spanned<String>>,
    #[serde(default)]
    gateways: Vec<Spanned<String>>,
    bridge: Option<Spanned<String>>,
    #[serde(default)]
    internal: bool,
    masquerade: Option<bool>,
    gateway_mode: Option<Spanned<String>>,
    gateway_mode_v6: Option<Spanned<String>>,
    icc: Option<bool>,
    #[serde(default)]
    trusted_interfaces: Vec<Spanned<String>>,
    isolate: Option<bool>,
    mtu: Option<Spanned<u32>>,
    /// Names of the network's namespaces resolve (default true).
    dns: Option<bool>,
    dns_domain: Option<Spanned<String>>,
    /// `bridge` (the default), `macvlan` or `host-device`.
    driver: Option<Spanned<String>>,
    /// macvlan: the host interface on the LAN, the mode, the pools.
    parent: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    ip_ranges: Vec<Spanned<String>>,
    #[serde(default)]
    host_access: bool,
    probe_wait: Option<u32>,
    /// host-device: the host interface moved in.
    device: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceSpec {
    #[serde(default)]
    dns: Vec<Spanned<String>>,
    #[serde(default)]
    attach: Vec<AttachSpec>,
    /// A router: IPv4 and IPv6 forwarding on.
    #[serde(default)]
    forward: bool,
    /// Static routes, `DEST via GATEWAY`.
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    /// Commands run once, in order, when `up` makes the namespace.
    #[serde(default)]
    exec: Vec<Spanned<String>>,
    /// Long-running processes `up` starts and `down` stops.
    #[serde(default)]
    run: Vec<Spanned<String>>,
    /// Files the node's processes see: path in the node -> a file beside
    /// the topology file, or `{ text = "..." }`.
    #[serde(default)]
    files: BTreeMap<Spanned<String>, Spanned<NodeFileSpec>>,
}

/// A node file's content as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NodeFileSpec {
    Path(String),
    Inline { text: String },
}

/// `ip = "10.0.0.2"` or `ip = ["10.0.0.2", "fd00::2"]`. (Spans do not
/// survive serde's untagged enums, so the span is the whole value's.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachSpec {
    network: Spanned<String>,
    ip: Option<Spanned<OneOrMany>>,
    ifname: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    publish: Vec<Spanned<String>>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    /// Impairs what the namespace's end sends.
    impair: Option<Spanned<lab::ImpairSpec>>,
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Ctx<'a> {
    path: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, msg: impl std::fmt::Display) -> Error {
        let (line, col) = line_col(self.text, span.start);
        Error::InvalidFile {
            location: format!("{}:{line}:{col}", self.path),
            message: msg.to_string(),
        }
    }
}

/// An MTU of the file (of a network or a link), checked.
fn mtu(cx: &Ctx, m: &Option<Spanned<u32>>) -> Result<Option<u32>> {
    match m {
        Some(m) if !(68..=65535).contains(m.get_ref()) => Err(cx.err(
            m.span(),
            format!("invalid MTU {}: must be between 68 and 65535", m.get_ref()),
        )),
        other => Ok(other.as_ref().map(|m| *m.get_ref())),
    }
}

/// The path that marks what an `up` of the file made: the canonical one,
/// so that `up`, `down` and `up` again from another directory agree.
/// A file that no longer exists (`down` after deleting it) keeps the
/// absolute path it had.
pub fn owner_of(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| std::env::current_dir().unwrap_or_default().join(path))
        .display()
        .to_string()
}

/// Reads and validates a topology file.
pub fn load(path: &Path) -> Result<Topology> {
    let shown = path.display().to_string();
    let read_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchFile {
            path: shown.clone(),
        },
        _ => Error::ReadFile {
            path: shown.clone(),
            source,
        },
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::FileTooLarge {
            path: shown,
            size: meta.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(&shown, &owner_of(path), &text)
}

/// What the networks of a file define, for checking its attachments.
#[derive(Default)]
struct Defined {
    subnets_of: BTreeMap<String, Vec<IpNet>>,
    all_subnets: Vec<(IpNet, String)>,
    bridges: BTreeMap<String, String>,
}

/// Parses and validates topology text; `path` is used in messages, `owner`
/// marks the objects it creates.
pub fn parse(path: &str, owner: &str, text: &str) -> Result<Topology> {
    let cx = Ctx { path, text };
    let spec: FileSpec = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        match e.span() {
            Some(span) => cx.err(span, msg),
            None => Error::InvalidFile {
                location: path.to_string(),
                message: msg,
            },
        }
    })?;
    let mut defined = Defined::default();
    let mut networks = Vec::new();
    for (name, n) in &spec.networks {
        networks.push(network(&cx, name, n, &mut defined)?);
    }
    let mut attachments = Vec::new();
    let mut dns = BTreeMap::new();
    let mut taken = Taken::default();
    for (ns, spec_ns) in &spec.namespaces {
        nsref::validate_name(ns.get_ref()).map_err(|e| cx.err(ns.span(), e))?;
        let servers = spec_ns
            .dns
            .iter()
            .map(|d| {
                d.get_ref().parse::<IpAddr>().map_err(|_| {
                    cx.err(
                        d.span(),
                        format!("invalid DNS server {:?}: not an IP address", d.get_ref()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !servers.is_empty() {
            dns.insert(ns.get_ref().clone(), servers);
        }
        let mut seen_networks = BTreeSet::new();
        let mut seen_ifnames = BTreeSet::new();
        for a in &spec_ns.attach {
            let req = attachment(&cx, ns, a, &defined, &mut taken)?;
            if !seen_networks.insert(req.network.clone()) {
                return Err(cx.err(
                    a.network.span(),
                    format!(
                        "namespace {} is attached to network {} twice",
                        ns.get_ref(),
                        req.network
                    ),
                ));
            }
            if !seen_ifnames.insert(req.ifname().to_string()) {
                let span = a
                    .ifname
                    .as_ref()
                    .map_or_else(|| a.network.span(), |i| i.span());
                return Err(cx.err(
                    span,
                    format!(
                        "namespace {} has two interfaces named {}; set ifname",
                        ns.get_ref(),
                        req.ifname()
                    ),
                ));
            }
            attachments.push(req);
        }
    }
    let lab = lab::parse(&cx, owner, &spec, &attachments)?;
    Ok(Topology {
        owner: owner.to_string(),
        networks,
        attachments,
        dns,
        lab,
    })
}

/// One `[networks.NAME]` table, checked against the networks before it.
fn network(
    cx: &Ctx,
    name: &Spanned<String>,
    n: &NetworkSpec,
    defined: &mut Defined,
) -> Result<CreateRequest> {
    names::validate_network_name(name.get_ref()).map_err(|e| cx.err(name.span(), e))?;
    let mut cidrs = Vec::new();
    for s in &n.subnets {
        let net = parse_subnet(s.get_ref()).map_err(|e| cx.err(s.span(), e))?;
        if let Some((_, other)) = defined
            .all_subnets
            .iter()
            .find(|(o, _)| ipam::overlap(o, &net))
        {
            return Err(cx.err(
                s.span(),
                format!("subnet {net} overlaps a subnet of network {other}"),
            ));
        }
        defined.all_subnets.push((net, name.get_ref().clone()));
        cidrs.push(net);
    }
    if cidrs.is_empty() {
        return Err(cx.err(
            name.span(),
            format!("network {} has no subnets (a topology names them, so that it means the same everywhere)", name.get_ref()),
        ));
    }
    let mut gateways = Vec::new();
    for g in &n.gateways {
        let ip: IpAddr = g
            .get_ref()
            .parse()
            .map_err(|_| cx.err(g.span(), format!("invalid gateway {:?}", g.get_ref())))?;
        if !cidrs.iter().any(|c| c.contains(&ip)) {
            return Err(cx.err(
                g.span(),
                format!("gateway {ip} is in no subnet of network {}", name.get_ref()),
            ));
        }
        gateways.push(ip);
    }
    let lan = lan_request(cx, name, n)?;
    let bridge = n.bridge.as_ref().unwrap_or(name);
    // A network on the LAN has no bridge to name.
    if lan.is_none() {
        names::validate_ifname(bridge.get_ref()).map_err(|e| {
            let hint = if n.bridge.is_none() {
                "; set bridge = \"...\""
            } else {
                ""
            };
            cx.err(bridge.span(), format!("{e}{hint}"))
        })?;
        if let Some(other) = defined
            .bridges
            .insert(bridge.get_ref().clone(), name.get_ref().clone())
        {
            return Err(cx.err(
                bridge.span(),
                format!(
                    "bridge {} is also the bridge of network {other}",
                    bridge.get_ref()
                ),
            ));
        }
    }
    let mtu = mtu(cx, &n.mtu)?;
    let (gateway_mode, gateway_mode_v6) = modes(cx, n)?;
    let mut trusted_interfaces = Vec::new();
    for t in &n.trusted_interfaces {
        names::validate_ifname(t.get_ref()).map_err(|e| cx.err(t.span(), e))?;
        trusted_interfaces.push(t.get_ref().clone());
    }
    defined
        .subnets_of
        .insert(name.get_ref().clone(), cidrs.clone());
    Ok(CreateRequest {
        subnets: cidrs,
        gateways,
        bridge: n.bridge.as_ref().map(|b| b.get_ref().clone()),
        internal: n.internal,
        gateway_mode,
        gateway_mode_v6,
        icc: n.icc.unwrap_or(true),
        trusted_interfaces,
        isolate: n.isolate.unwrap_or(true),
        mtu,
        dns: n.dns.unwrap_or(true),
        dns_domain: n
            .dns_domain
            .as_ref()
            .map(|d| names::validate_domain(d.get_ref()).map_err(|e| cx.err(d.span(), e)))
            .transpose()?,
        lan,
        ..CreateRequest::named(name.get_ref())
    })
}

/// The LAN part of a network (`driver = "macvlan"` or `"host-device"`);
/// options of a driver the network does not have are errors at their
/// line.
fn lan_request(
    cx: &Ctx,
    name: &Spanned<String>,
    n: &NetworkSpec,
) -> Result<Option<crate::model::lan::LanRequest>> {
    use crate::model::lan::{LanRequest, DEFAULT_PROBE_MS};
    let driver = n
        .driver
        .as_ref()
        .map(|d| d.get_ref().as_str())
        .unwrap_or("bridge");
    let stray = |option: Option<std::ops::Range<usize>>, what: &str| match option {
        Some(span) => Err(cx.err(
            span,
            format!("{what} is not an option of a {driver} network"),
        )),
        None => Ok(()),
    };
    if driver != "macvlan" {
        stray(n.parent.as_ref().map(|p| p.span()), "parent")?;
        stray(n.mode.as_ref().map(|p| p.span()), "mode")?;
        stray(n.ip_ranges.first().map(|p| p.span()), "ip_ranges")?;
    }
    if driver != "host-device" {
        stray(n.device.as_ref().map(|p| p.span()), "device")?;
    }
    let needed = |v: &Option<Spanned<String>>, what: &str| {
        v.as_ref().map(|p| p.get_ref().clone()).ok_or_else(|| {
            cx.err(
                name.span(),
                format!("network {} ({driver}) needs {what}", name.get_ref()),
            )
        })
    };
    Ok(match driver {
        "bridge" => None,
        "macvlan" => Some(LanRequest::Macvlan {
            parent: needed(&n.parent, "parent = \"IFNAME\"")?,
            mode: match &n.mode {
                Some(m) => m.get_ref().parse().map_err(|e| cx.err(m.span(), e))?,
                None => Default::default(),
            },
            ip_ranges: n
                .ip_ranges
                .iter()
                .map(|r| parse_subnet(r.get_ref()).map_err(|e| cx.err(r.span(), e)))
                .collect::<Result<_>>()?,
            host_access: n.host_access,
            probe_ms: n.probe_wait.unwrap_or(DEFAULT_PROBE_MS),
        }),
        "host-device" => Some(LanRequest::HostDevice {
            device: needed(&n.device, "device = \"IFNAME\"")?,
        }),
        other => {
            let span = n.driver.as_ref().map(|d| d.span()).unwrap_or(name.span());
            return Err(cx.err(
                span,
                format!("unknown driver {other:?}: expected bridge, macvlan or host-device"),
            ));
        }
    })
}

/// `gateway_mode` (and `gateway_mode_v6`), or `masquerade = false`, its
/// older spelling of `routed`.
fn modes(cx: &Ctx, n: &NetworkSpec) -> Result<(GatewayMode, Option<GatewayMode>)> {
    let parse = |s: &Spanned<String>| -> Result<GatewayMode> {
        s.get_ref().parse().map_err(|e: String| cx.err(s.span(), e))
    };
    let v4 = match (&n.gateway_mode, n.masquerade) {
        (Some(m), Some(false)) if parse(m)? != GatewayMode::Routed => {
            return Err(cx.err(
                m.span(),
                "masquerade = false is gateway mode routed; it contradicts this gateway_mode",
            ))
        }
        (Some(m), _) => parse(m)?,
        (None, Some(false)) => GatewayMode::Routed,
        (None, _) => GatewayMode::Nat,
    };
    let v6 = n.gateway_mode_v6.as_ref().map(parse).transpose()?;
    Ok((v4, v6))
}

/// Addresses and host ports already given out by earlier attachments.
#[derive(Default)]
struct Taken {
    ips: BTreeMap<IpAddr, String>,
    ports: Vec<(PortMapping, String)>,
}

/// One attachment of namespace `ns`.
fn attachment(
    cx: &Ctx,
    ns: &Spanned<String>,
    a: &AttachSpec,
    defined: &Defined,
    taken: &mut Taken,
) -> Result<ConnectRequest> {
    let net = a.network.get_ref();
    let Some(cidrs) = defined.subnets_of.get(net) else {
        return Err(cx.err(
            a.network.span(),
            format!("unknown network {net:?}: it is not defined in [networks]"),
        ));
    };
    let mut req = ConnectRequest::new(net, NsRef::Named(ns.get_ref().clone()));
    if let Some(i) = &a.ifname {
        names::validate_ifname(i.get_ref()).map_err(|e| cx.err(i.span(), e))?;
    }
    req.ifname = Some(
        a.ifname
            .as_ref()
            .map_or_else(|| DEFAULT_IFNAME.to_string(), |i| i.get_ref().clone()),
    );
    if let Some(m) = &a.mac {
        req.mac = Some(names::parse_mac(m.get_ref()).map_err(|e| cx.err(m.span(), e))?);
    }
    for alias in &a.aliases {
        req.aliases
            .push(names::validate_domain(alias.get_ref()).map_err(|e| cx.err(alias.span(), e))?);
    }
    let (ips, ip_span): (Vec<String>, Range<usize>) = match &a.ip {
        None => (vec![], 0..0),
        Some(s) => (
            match s.get_ref() {
                OneOrMany::One(one) => vec![one.clone()],
                OneOrMany::Many(v) => v.clone(),
            },
            s.span(),
        ),
    };
    for text_ip in &ips {
        let err = |msg: String| cx.err(ip_span.clone(), msg);
        let ip: RequestedIp = text_ip
            .parse()
            .map_err(|_| err(format!("invalid address {text_ip:?}")))?;
        let Some(cidr) = cidrs.iter().find(|c| c.contains(&ip.addr)) else {
            return Err(err(format!(
                "address {} is outside the subnets of network {net}",
                ip.addr
            )));
        };
        if ip.prefix.is_some_and(|p| p != cidr.prefix_len()) {
            return Err(err(format!(
                "address {text_ip}: prefix does not match subnet {cidr}"
            )));
        }
        if let Some(other) = taken.ips.insert(ip.addr, ns.get_ref().clone()) {
            return Err(err(format!(
                "address {} is also given to namespace {other}",
                ip.addr
            )));
        }
        req.ips.push(ip);
    }
    for p in &a.publish {
        let m: PortMapping = p.get_ref().parse().map_err(|e| cx.err(p.span(), e))?;
        // Host ports nsnet picks cannot clash: they are picked free.
        let clash = taken
            .ports
            .iter()
            .find(|(o, _)| !m.is_auto() && o.conflicts_with(&m));
        if let Some((_, other)) = clash {
            return Err(cx.err(
                p.span(),
                format!("published port {m} is also published by namespace {other}"),
            ));
        }
        if !m.is_auto() {
            taken.ports.push((m.clone(), ns.get_ref().clone()));
        }
        req.publish.push(m);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(text: &str) -> String {
        crate::error_chain(&parse("t.toml", "/t.toml", text).unwrap_err())
    }

    #[test]
    fn dns_keys_parse_and_bad_names_are_located() {
        let t = parse(
            "t.toml",
            "/t.toml",
            r#"
[networks.a]
subnets = ["10.0.0.0/24"]
dns = false
[networks.b]
subnets = ["10.1.0.0/24"]
dns_domain = "Lab.Example"
[namespaces.web]
attach = [{ network = "b", aliases = ["WWW", "api"] }]
"#,
        )
        .unwrap();
        let (a, b) = (&t.networks[0], &t.networks[1]);
        assert!(!a.dns && b.dns);
        assert_eq!(b.dns_domain.as_deref(), Some("lab.example"));
        assert_eq!(t.attachments[0].aliases, vec!["www", "api"]);
        let e = bad("[networks.b]\nsubnets = [\"10.1.0.0/24\"]\n[namespaces.web]\nattach = [{ network = \"b\", aliases = [\"no_way\"] }]\n");
        assert!(e.starts_with("t.toml:4:") && e.contains("no_way"), "{e}");
    }

    #[test]
    fn gateway_modes_icc_and_trusted_interfaces_parse() {
        let t = parse(
            "t.toml",
            "/t.toml",
            r#"
[networks.a]
subnets = ["10.0.0.0/24", "fd00::/64"]
gateway_mode = "nat"
gateway_mode_v6 = "routed"
icc = false
trusted_interfaces = ["eth1"]
[networks.b]
subnets = ["10.1.0.0/24"]
masquerade = false
"#,
        )
        .unwrap();
        let a = &t.networks[0];
        assert_eq!(
            (a.gateway_mode, a.mode_v6(), a.icc),
            (GatewayMode::Nat, GatewayMode::Routed, false)
        );
        assert_eq!(a.trusted_interfaces, vec!["eth1"]);
        assert_eq!(t.networks[1].gateway_mode, GatewayMode::Routed);
        for (text, needle) in [
            ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\ngateway_mode = \"bridge\"\n", "t.toml:3:16: invalid gateway mode \"bridge\""),
            ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\nmasquerade = false\ngateway_mode = \"nat\"\n", "contradicts"),
            ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\ntrusted_interfaces = [\"a/b\"]\n", "t.toml:3:23:"),
        ] {
            let e = bad(text);
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn the_tutorial_parses() {
        let t = parse(
            "t.toml",
            "/t.toml",
            r#"
[networks.mydocker0]
subnets = ["172.16.0.0/16"]

[namespaces.ns1]
attach = [{ network = "mydocker0", ip = "172.16.1.1/16" }]

[namespaces.ns2]
dns = ["192.0.2.53"]
[[namespaces.ns2.attach]]
network = "mydocker0"
ip = ["172.16.1.2/16"]
publish = ["8080:80"]
"#,
        )
        .unwrap();
        assert_eq!(t.networks.len(), 1);
        assert_eq!(t.attachments.len(), 2);
        assert_eq!(t.attachments[1].publish, vec!["8080:80".parse().unwrap()]);
        assert_eq!(t.dns["ns2"], vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let cases = [
            ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\ncolour = 1\n", "t.toml:3:1:", "unknown field `colour`"),
            ("[networks.a]\nsubnets = [\"10.0.0.0/33\"]\n", "t.toml:2:12:", "\"10.0.0.0/33\""),
            (
                "[networks.a]\nsubnets = [\"10.0.0.0/16\"]\n[networks.b]\nsubnets = [\"10.0.1.0/24\"]\n",
                "t.toml:4:12:",
                "overlaps a subnet of network a",
            ),
            (
                "[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"b\" }]\n",
                "t.toml:4:23:",
                "unknown network \"b\"",
            ),
            (
                "[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\", ip = \"10.1.0.5\" }]\n",
                "t.toml:4:33:",
                "outside the subnets",
            ),
            (
                "[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\", ip = \"10.0.0.5\" }]\n[namespaces.y]\nattach = [{ network = \"a\", ip = \"10.0.0.5\" }]\n",
                "t.toml:6:33:",
                "also given to namespace x",
            ),
            ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[networks.a]\n", "t.toml:3:", "duplicate"),
            ("[namespaces.\"a/b\"]\n", "t.toml:1:", "must not contain /"),
            ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\nmtu = 10\n", "t.toml:3:7:", "MTU 10"),
            ("[networks.a]\n", "t.toml:1:", "no subnets"),
            (
                "[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\", publish = [\"0:1\"] }]\n",
                "t.toml:4:",
                "outside 1-65535",
            ),
            ("[networks.a\n", "t.toml:1:", ""),
        ];
        for (text, at, needle) in cases {
            let e = bad(text);
            assert!(e.starts_with(at), "{text:?}: {e}");
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ü\nx", 3), (2, 1));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}

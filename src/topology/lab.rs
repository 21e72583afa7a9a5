//! The lab part of a topology file: `[[links]]`, `forward` and `routes` of
//! a namespace, `impair` on a link or an attachment. Parsed and validated
//! with the file's line and column; planned by `plan::lab`.
//!
//! ```toml
//! [[links]]
//! endpoints = ["r1:eth1", "r2:eth1"]
//! ips = ["10.1.12.1/30", "10.1.12.2/30"]   # one per end (a list per end for several)
//! mtu = 1500
//! impair = { delay = "20ms", loss = "1%" }  # both ends
//!
//! [[links]]                                 # a port of switch s1 (made with its first link)
//! endpoints = ["h1:eth0", "network:s1"]
//! ips = ["10.0.0.1/24"]                     # the namespace's end only
//!
//! [namespaces.r1]
//! forward = true
//! routes = ["10.2.0.0/24 via 10.1.12.2", "default via 10.1.12.2"]
//! ```

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, FileSpec, OneOrMany};
use crate::api::Result;
use crate::model::graph::{self, Graph};
use crate::model::lab::LinkRequest;
use crate::model::lab::{Endpoint, Impairment, LinkEnd, Route};
use crate::model::topology::{LabSpec, Router};
use crate::model::ConnectRequest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkSpec {
    endpoints: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    ips: Vec<Spanned<OneOrMany>>,
    mtu: Option<Spanned<u32>>,
    impair: Option<Spanned<ImpairSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImpairSpec {
    delay: Option<String>,
    jitter: Option<String>,
    loss: Option<String>,
    rate: Option<String>,
    corrupt: Option<String>,
    duplicate: Option<String>,
}

fn impairment(cx: &Ctx, spec: &Spanned<ImpairSpec>) -> Result<Impairment> {
    let s = spec.get_ref();
    Impairment::from_options([
        ("delay", s.delay.as_ref()),
        ("jitter", s.jitter.as_ref()),
        ("loss", s.loss.as_ref()),
        ("rate", s.rate.as_ref()),
        ("corrupt", s.corrupt.as_ref()),
        ("duplicate", s.duplicate.as_ref()),
    ])
    .map_err(|e| cx.err(spec.span(), e))?
    .ok_or_else(|| {
        cx.err(
            spec.span(),
            "impair needs one of delay, jitter, loss, rate, corrupt, duplicate",
        )
    })
}

fn addresses(cx: &Ctx, v: &Spanned<OneOrMany>) -> Result<Vec<IpNet>> {
    let texts = match v.get_ref() {
        OneOrMany::One(s) => vec![s.clone()],
        OneOrMany::Many(l) => l.clone(),
    };
    texts
        .iter()
        .map(|t| {
            t.parse::<IpNet>().map_err(|_| {
                cx.err(
                    v.span(),
                    format!("invalid address {t:?}: expected ADDR/PLEN such as 10.1.12.1/30"),
                )
            })
        })
        .collect()
}

fn link(cx: &Ctx, owner: &str, spec: &Spanned<LinkSpec>) -> Result<LinkRequest> {
    let l = spec.get_ref();
    let ends: Vec<LinkEnd> = l
        .endpoints
        .get_ref()
        .iter()
        .map(|e| e.get_ref().parse().map_err(|r| cx.err(e.span(), r)))
        .collect::<Result<_>>()?;
    let [a, b]: [LinkEnd; 2] = ends.try_into().map_err(|_| {
        cx.err(
            l.endpoints.span(),
            "a link has exactly two endpoints, NAMESPACE:INTERFACE or network:SWITCH each",
        )
    })?;
    if a == b {
        return Err(cx.err(l.endpoints.span(), format!("link end {a} is given twice")));
    }
    let to_switch = |e: &LinkEnd| matches!(e, LinkEnd::Switch(_));
    let addresses = match l.ips.as_slice() {
        [] => [Vec::new(), Vec::new()],
        // A switch's port has no address: one entry is the other end's.
        [x] if to_switch(&b) && !to_switch(&a) => [addresses(cx, x)?, Vec::new()],
        [x] if to_switch(&a) && !to_switch(&b) => [Vec::new(), addresses(cx, x)?],
        [x, y] => [addresses(cx, x)?, addresses(cx, y)?],
        [first, ..] => {
            return Err(cx.err(
                first.span(),
                "ips has one entry per end: two, in the order of the endpoints",
            ))
        }
    };
    for (end, addrs) in [&a, &b].into_iter().zip(&addresses) {
        if let (LinkEnd::Switch(switch), false) = (end, addrs.is_empty()) {
            let r = crate::model::Rejection::SwitchPortSetting {
                end: end.to_string(),
                switch: switch.clone(),
            };
            return Err(cx.err(l.ips[0].span(), r));
        }
    }
    let mtu = super::mtu(cx, &l.mtu)?;
    Ok(LinkRequest {
        ends: [a, b],
        addresses,
        mtu,
        owner: Some(owner.to_string()),
        impair: l.impair.as_ref().map(|i| impairment(cx, i)).transpose()?,
    })
}

/// A link's `network:NAME` ends name switches: not one of the file's
/// networks, nor one of its namespaces.
fn check_switches(
    cx: &Ctx,
    s: &Spanned<LinkSpec>,
    req: &LinkRequest,
    networks: &[&str],
    spec: &FileSpec,
) -> Result<()> {
    for end in &req.ends {
        let LinkEnd::Switch(name) = end else {
            continue;
        };
        let what = if networks.contains(&name.as_str()) {
            "a network of this file (namespaces join it with attach); a switch needs a name no network has"
        } else if spec.namespaces.keys().any(|n| n.get_ref() == name) {
            "a namespace of this file"
        } else {
            continue;
        };
        let r = crate::model::Rejection::NotASwitch {
            name: name.clone(),
            what: what.into(),
        };
        return Err(cx.err(s.get_ref().endpoints.span(), r));
    }
    Ok(())
}

/// The file's links, and the impairments they ask for, into `lab`.
fn links(
    cx: &Ctx,
    owner: &str,
    spec: &FileSpec,
    attachments: &[ConnectRequest],
    lab: &mut LabSpec,
) -> Result<()> {
    let mut ends: BTreeMap<Endpoint, ()> = BTreeMap::new();
    let networks: Vec<&str> = spec.networks.keys().map(|n| n.get_ref().as_str()).collect();
    for s in &spec.links {
        let req = link(cx, owner, s)?;
        check_switches(cx, s, &req, &networks, spec)?;
        for e in &req.resolved_ends() {
            let on_network = attachments
                .iter()
                .find(|a| a.namespace.name() == Some(&e.namespace) && a.ifname() == e.ifname);
            if let Some(a) = on_network {
                return Err(cx.err(
                    s.get_ref().endpoints.span(),
                    format!(
                        "link end {e} is in use: the attachment to network {}",
                        a.network
                    ),
                ));
            }
            if ends.insert(e.clone(), ()).is_some() {
                return Err(cx.err(
                    s.get_ref().endpoints.span(),
                    format!("link end {e} is in use by another link"),
                ));
            }
            if let Some(i) = &req.impair {
                lab.impairments.insert(e.clone(), i.clone());
            }
        }
        lab.links.push(req);
    }
    Ok(())
}

/// The file's lab objects; `attachments` are its parsed attachments (an
/// interface a link end may not take).
pub(super) fn parse(
    cx: &Ctx,
    owner: &str,
    spec: &FileSpec,
    attachments: &[ConnectRequest],
) -> Result<LabSpec> {
    let mut lab = LabSpec::default();
    links(cx, owner, spec, attachments, &mut lab)?;
    for (ns, n) in &spec.namespaces {
        for (a, req) in n.attach.iter().zip(
            attachments
                .iter()
                .filter(|r| r.namespace.name() == Some(ns.get_ref())),
        ) {
            if let Some(i) = &a.impair {
                let end = Endpoint {
                    namespace: ns.get_ref().clone(),
                    ifname: req.ifname().to_string(),
                };
                lab.impairments.insert(end, impairment(cx, i)?);
            }
        }
        let routes = n
            .routes
            .iter()
            .map(|r| {
                r.get_ref()
                    .parse::<Route>()
                    .map_err(|e| cx.err(r.span(), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let commands = |v: &[toml::Spanned<String>]| -> Result<Vec<String>> {
            v.iter()
                .map(|c| {
                    let text = c.get_ref().trim();
                    if text.is_empty() || text.contains('\0') {
                        Err(cx.err(c.span(), "a command is a non-empty shell command line"))
                    } else {
                        Ok(text.to_string())
                    }
                })
                .collect()
        };
        let (exec, run) = (commands(&n.exec)?, commands(&n.run)?);
        let files = node_files(cx, owner, &n.files)?;
        let made = n.forward
            || !n.attach.is_empty()
            || lab
                .links
                .iter()
                .any(|l| l.ends.iter().any(|e| e.namespace() == ns.get_ref()));
        let any = !exec.is_empty() || !run.is_empty() || !files.is_empty();
        if any && !made {
            return Err(cx.err(
                ns.span(),
                format!(
                    "namespace {} has commands to run but nothing makes it: attach it to a network, give it a link, or set forward = true",
                    ns.get_ref()
                ),
            ));
        }
        if any {
            lab.processes.insert(
                ns.get_ref().clone(),
                crate::model::topology::NodeCommands { exec, run, files },
            );
        }
        if n.forward || !routes.is_empty() {
            lab.routers.insert(
                ns.get_ref().clone(),
                Router {
                    forward: n.forward,
                    routes,
                },
            );
        }
    }
    Ok(lab)
}

/// A node's `files`: absolute paths in the node (no `..`, not a
/// directory), their sources beside the topology file `owner`.
fn node_files(
    cx: &Ctx,
    owner: &str,
    files: &BTreeMap<toml::Spanned<String>, toml::Spanned<super::NodeFileSpec>>,
) -> Result<BTreeMap<std::path::PathBuf, crate::model::topology::FileSource>> {
    use crate::model::topology::FileSource;
    use std::path::{Component, Path};
    let beside = Path::new(owner).parent().unwrap_or(Path::new("/"));
    let mut out = BTreeMap::new();
    for (path, source) in files {
        let p = Path::new(path.get_ref());
        let plain = p
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
        if !p.is_absolute() || !plain || p.parent().is_none() || path.get_ref().ends_with('/') {
            return Err(cx.err(
                path.span(),
                format!(
                    "node file {:?}: a file's absolute path in the node, without .. (such as /etc/frr/frr.conf)",
                    path.get_ref()
                ),
            ));
        }
        let src = match source.get_ref() {
            super::NodeFileSpec::Path(rel) => FileSource::Path(beside.join(rel)),
            super::NodeFileSpec::Inline { text } => FileSource::Text(text.clone()),
        };
        out.insert(p.to_path_buf(), src);
    }
    Ok(out)
}

/// The file as a graph: its networks, namespaces, attachments and links.
pub fn graph(topo: &super::Topology) -> Graph {
    let mut g = Graph::default();
    for n in &topo.networks {
        let mut lines: Vec<String> = n.subnets.iter().map(|s| s.to_string()).collect();
        lines.extend(n.lan.as_ref().map(graph::lan_request_line));
        g.networks.insert(n.name.clone(), lines);
    }
    for a in &topo.attachments {
        let ns = a.namespace.to_string();
        g.namespaces.entry(ns.clone()).or_insert(false);
        g.attachments.push(graph::Attachment {
            namespace: ns,
            network: a.network.clone(),
            ifname: a.ifname().to_string(),
            addresses: a.ips.iter().map(|i| i.to_string()).collect(),
        });
    }
    for (ns, r) in &topo.lab.routers {
        *g.namespaces.entry(ns.clone()).or_insert(false) |= r.forward;
    }
    for l in &topo.lab.links {
        let ends = l.resolved_ends();
        for e in &ends {
            g.namespaces.entry(e.namespace.clone()).or_insert(false);
        }
        for s in l.ends.iter().filter_map(|e| match e {
            LinkEnd::Switch(s) => Some(s),
            LinkEnd::Iface(_) => None,
        }) {
            g.switches.insert(s.clone());
        }
        let text = |v: &[IpNet]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let imp = |e: &Endpoint| {
            topo.lab
                .impairments
                .get(e)
                .map(|i| i.to_string())
                .unwrap_or_default()
        };
        g.links.push(graph::Link {
            addresses: [text(&l.addresses[0]), text(&l.addresses[1])],
            impaired: [imp(&ends[0]), imp(&ends[1])],
            ends,
        });
    }
    g
}

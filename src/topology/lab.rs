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
use crate::model::lab::{Endpoint, Impairment, Route};
use crate::model::ConnectRequest;
use crate::plan::lab::LinkRequest;

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

/// A namespace's router settings in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Router {
    pub forward: bool,
    pub routes: Vec<Route>,
}

/// The lab objects a file asks for.
#[derive(Debug, Clone, Default)]
pub struct LabSpec {
    pub links: Vec<LinkRequest>,
    pub routers: BTreeMap<String, Router>,
    pub impairments: BTreeMap<Endpoint, Impairment>,
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
    let ends: Vec<Endpoint> = l
        .endpoints
        .get_ref()
        .iter()
        .map(|e| e.get_ref().parse().map_err(|r| cx.err(e.span(), r)))
        .collect::<Result<_>>()?;
    let [a, b]: [Endpoint; 2] = ends.try_into().map_err(|_| {
        cx.err(
            l.endpoints.span(),
            "a link has exactly two endpoints, NAMESPACE:INTERFACE each",
        )
    })?;
    if a == b {
        return Err(cx.err(l.endpoints.span(), format!("link end {a} is given twice")));
    }
    let addresses = match l.ips.as_slice() {
        [] => [Vec::new(), Vec::new()],
        [x, y] => [addresses(cx, x)?, addresses(cx, y)?],
        [first, ..] => {
            return Err(cx.err(
                first.span(),
                "ips has one entry per end: two, in the order of the endpoints",
            ))
        }
    };
    let mtu = super::mtu(cx, &l.mtu)?;
    Ok(LinkRequest {
        ends: [a, b],
        addresses,
        mtu,
        owner: Some(owner.to_string()),
        impair: l.impair.as_ref().map(|i| impairment(cx, i)).transpose()?,
    })
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
    let mut ends: BTreeMap<Endpoint, ()> = BTreeMap::new();
    for s in &spec.links {
        let req = link(cx, owner, s)?;
        for e in &req.ends {
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

/// The file as a graph: its networks, namespaces, attachments and links.
pub fn graph(topo: &super::Topology) -> Graph {
    let mut g = Graph::default();
    for n in &topo.networks {
        g.networks.insert(
            n.name.clone(),
            n.subnets.iter().map(|s| s.to_string()).collect(),
        );
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
        for e in &l.ends {
            g.namespaces.entry(e.namespace.clone()).or_insert(false);
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
            ends: l.ends.clone(),
            addresses: [text(&l.addresses[0]), text(&l.addresses[1])],
            impaired: [imp(&l.ends[0]), imp(&l.ends[1])],
        });
    }
    g
}

/// Whether a recorded link is the one the file asks for.
fn link_matches(have: &crate::model::lab::Link, want: &LinkRequest) -> bool {
    have.ends == want.ends && have.addresses == want.addresses && have.mtu == want.mtu
}

/// Removes the lab objects of `owner` the file no longer wants (or wants
/// otherwise), from `state`, as one teardown; the steps, and the lines
/// that say so.
pub(super) fn plan_removals(
    lab: &LabSpec,
    owner: &str,
    state: &mut crate::model::State,
    changes: &mut Vec<String>,
) -> Result<Vec<crate::plan::Op>> {
    use crate::plan::lab::{plan_lab_removal, Removal};
    let mine = |o: &Option<String>| o.as_deref() == Some(owner);
    let mut r = Removal::default();
    for (e, rec) in &state.impairments {
        if mine(&rec.owner) && !lab.impairments.contains_key(e) {
            changes.push(format!("clear the impairment of {e}"));
            r.impairments.push(e.clone());
        }
    }
    for (ns, rec) in state.lab_namespaces.iter().filter(|(_, r)| mine(&r.owner)) {
        let want = lab.routers.get(ns).cloned().unwrap_or_default();
        for route in rec.routes.iter().filter(|x| !want.routes.contains(x)) {
            changes.push(format!("delete route {route} in {ns}"));
            r.routes.push((ns.clone(), route.clone()));
        }
        if rec.forward && !want.forward {
            changes.push(format!("stop forwarding in {ns}"));
            r.forward_off.push(ns.clone());
        }
    }
    for l in &state.links {
        if mine(&l.owner) && !lab.links.iter().any(|w| link_matches(l, w)) {
            changes.push(format!("delete link {} <-> {}", l.ends[0], l.ends[1]));
            r.links.push((l.ends[0].clone(), l.ends[1].clone()));
        }
    }
    Ok(plan_lab_removal(state, &r)?)
}

/// Makes what the file asks for and `state` lacks; `facts` describe the
/// namespaces as they will be once the file's attachments are made.
pub(super) fn plan_creations(
    lab: &LabSpec,
    owner: &str,
    state: &mut crate::model::State,
    facts: &crate::plan::lab::Facts,
    changes: &mut Vec<String>,
) -> Result<Vec<crate::plan::Op>> {
    use crate::plan::lab as plan;
    let mut ops = Vec::new();
    for want in &lab.links {
        if state.links.iter().any(|l| link_matches(l, want)) {
            continue;
        }
        changes.push(format!("link {} <-> {}", want.ends[0], want.ends[1]));
        let req = LinkRequest {
            impair: None,
            ..want.clone()
        };
        ops.extend(plan::plan_link_add(state, &req, facts)?);
    }
    let own = Some(owner.to_string());
    // A namespace the links or attachments above just planned exists by
    // the time the routers' steps run.
    let mut f = facts.clone();
    for ns in lab.routers.keys() {
        let known = state.lab_namespaces.contains_key(ns)
            || state
                .attachments_of(&crate::model::NsRef::Named(ns.clone()))
                .next()
                .is_some();
        f.entry(ns.clone()).or_default().exists |= known;
    }
    for (ns, r) in &lab.routers {
        if r.forward && !state.lab_namespaces.get(ns).is_some_and(|x| x.forward) {
            changes.push(format!("forward in {ns}"));
            ops.extend(plan::plan_forward(state, ns, true, own.clone(), &f)?);
        }
        for route in &r.routes {
            let have = state
                .lab_namespaces
                .get(ns)
                .is_some_and(|x| x.routes.contains(route));
            if !have {
                changes.push(format!("add route {route} in {ns}"));
                ops.extend(plan::plan_route_add(state, ns, route, own.clone(), &f)?);
            }
        }
    }
    for (end, imp) in &lab.impairments {
        if state.impairments.get(end).map(|r| &r.impairment) != Some(imp) {
            changes.push(format!("impair {end}: {imp}"));
            ops.extend(plan::plan_impair(
                state,
                end,
                Some(imp),
                own.clone(),
                facts,
            )?);
        }
    }
    Ok(ops)
}

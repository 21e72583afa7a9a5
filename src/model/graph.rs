//! A topology as a graph (networks and namespaces as nodes, attachments
//! and links as edges), rendered as Graphviz dot or Mermaid. Built from
//! the record or from a topology file; pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::lab::Endpoint;
use super::State;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// Network name and its subnets.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Namespace name and whether it forwards (a router).
    pub namespaces: BTreeMap<String, bool>,
    /// The namespaces that are switches (a bridge whose ports are links).
    pub switches: BTreeSet<String>,
    pub attachments: Vec<Attachment>,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub namespace: String,
    pub network: String,
    pub ifname: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub ends: [Endpoint; 2],
    pub addresses: [Vec<String>; 2],
    /// The impairment of each end, as text (empty: none).
    pub impaired: [String; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dot,
    Mermaid,
}

/// What a network on the LAN is on, as a line of its node's label.
fn lan_line(lan: &super::lan::Lan) -> String {
    match lan {
        super::lan::Lan::Macvlan(m) => format!("macvlan on {}", m.parent),
        super::lan::Lan::HostDevice(d) => format!("host device {}", d.device),
    }
}

/// The line `lan_line` gives a network asked for.
pub fn lan_request_line(lan: &super::lan::LanRequest) -> String {
    match lan {
        super::lan::LanRequest::Macvlan { parent, .. } => format!("macvlan on {parent}"),
        super::lan::LanRequest::HostDevice { device } => format!("host device {device}"),
    }
}

fn texts<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(T::to_string).collect()
}

impl Graph {
    /// What is recorded.
    pub fn from_state(state: &State) -> Graph {
        let mut g = Graph::default();
        for net in state.networks.values() {
            let mut lines: Vec<String> = net.subnets.iter().map(|s| s.cidr.to_string()).collect();
            lines.extend(net.lan.as_ref().map(lan_line));
            g.networks.insert(net.name.clone(), lines);
            for a in &net.attachments {
                let ns = a.namespace.to_string();
                g.namespaces.entry(ns.clone()).or_insert(false);
                g.attachments.push(Attachment {
                    namespace: ns,
                    network: net.name.clone(),
                    ifname: a.ifname.clone(),
                    addresses: texts(&a.addresses),
                });
            }
        }
        for (ns, r) in &state.lab_namespaces {
            *g.namespaces.entry(ns.clone()).or_insert(false) |= r.forward;
            if r.switch {
                g.switches.insert(ns.clone());
            }
        }
        for l in &state.links {
            let impaired = l.ends.clone().map(|e| {
                state
                    .impairments
                    .get(&e)
                    .map(|r| r.impairment.to_string())
                    .unwrap_or_default()
            });
            for e in &l.ends {
                g.namespaces.entry(e.namespace.clone()).or_insert(false);
            }
            g.links.push(Link {
                ends: l.ends.clone(),
                addresses: [texts(&l.addresses[0]), texts(&l.addresses[1])],
                impaired,
            });
        }
        g
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Dot => self.dot(),
            Format::Mermaid => self.mermaid(),
        }
    }

    fn ns_label(&self, ns: &str) -> String {
        if self.switches.contains(ns) {
            format!("{ns} (switch)")
        } else if self.namespaces.get(ns).copied().unwrap_or(false) {
            format!("{ns} (router)")
        } else {
            ns.to_string()
        }
    }

    fn end_label(ifname: &str, addresses: &[String], impaired: &str) -> String {
        let mut parts = vec![ifname.to_string()];
        parts.extend(addresses.iter().cloned());
        if !impaired.is_empty() {
            parts.push(format!("[{impaired}]"));
        }
        parts.join(" ")
    }

    /// Graphviz: networks are boxes, namespaces ellipses, routers octagons,
    /// switches 3-D boxes.
    pub fn dot(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::from("graph nsnet {\n  graph [overlap=false, splines=true];\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
        for (net, subnets) in &self.networks {
            let label = std::iter::once(net.clone())
                .chain(subnets.iter().cloned())
                .collect::<Vec<_>>()
                .join("\\n");
            let _ = writeln!(
                out,
                "  {} [shape=box, style=\"rounded,filled\", fillcolor=\"#dde8ff\", label=\"{}\"];",
                q(&format!("net:{net}")),
                label.replace('"', "\\\"")
            );
        }
        for (ns, router) in &self.namespaces {
            let shape = match (self.switches.contains(ns), *router) {
                (true, _) => "box3d",
                (false, true) => "octagon",
                (false, false) => "ellipse",
            };
            let _ = writeln!(
                out,
                "  {} [shape={shape}, label={}];",
                q(&format!("ns:{ns}")),
                q(&self.ns_label(ns))
            );
        }
        for a in &self.attachments {
            let _ = writeln!(
                out,
                "  {} -- {} [label={}];",
                q(&format!("ns:{}", a.namespace)),
                q(&format!("net:{}", a.network)),
                q(&Self::end_label(&a.ifname, &a.addresses, ""))
            );
        }
        for l in &self.links {
            let [a, b] = &l.ends;
            let style = if l.impaired.iter().any(|i| !i.is_empty()) {
                ", style=dashed, color=\"#c03030\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} -- {} [taillabel={}, headlabel={}{style}];",
                q(&format!("ns:{}", a.namespace)),
                q(&format!("ns:{}", b.namespace)),
                q(&Self::end_label(&a.ifname, &l.addresses[0], &l.impaired[0])),
                q(&Self::end_label(&b.ifname, &l.addresses[1], &l.impaired[1]))
            );
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart: node ids are generated (`n0`, `n1`, ...), names
    /// go in quoted labels.
    pub fn mermaid(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "#quot;"));
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        let mut out = String::from("graph LR\n");
        for (net, subnets) in &self.networks {
            let id = format!("n{}", ids.len());
            let label = std::iter::once(net.clone())
                .chain(subnets.iter().cloned())
                .collect::<Vec<_>>()
                .join("<br/>");
            let _ = writeln!(out, "  {id}[({})]", q(&label));
            ids.insert(format!("net:{net}"), id);
        }
        for (ns, router) in &self.namespaces {
            let id = format!("n{}", ids.len());
            let label = q(&self.ns_label(ns));
            if self.switches.contains(ns) {
                let _ = writeln!(out, "  {id}[/{label}/]");
            } else if *router {
                let _ = writeln!(out, "  {id}{{{{{label}}}}}");
            } else {
                let _ = writeln!(out, "  {id}([{label}])");
            }
            ids.insert(format!("ns:{ns}"), id);
        }
        for a in &self.attachments {
            let _ = writeln!(
                out,
                "  {} ---|{}| {}",
                ids[&format!("ns:{}", a.namespace)],
                q(&Self::end_label(&a.ifname, &a.addresses, "")),
                ids[&format!("net:{}", a.network)]
            );
        }
        for l in &self.links {
            let [a, b] = &l.ends;
            let label = format!(
                "{} — {}",
                Self::end_label(&a.ifname, &l.addresses[0], &l.impaired[0]),
                Self::end_label(&b.ifname, &l.addresses[1], &l.impaired[1])
            );
            let arrow = if l.impaired.iter().any(|i| !i.is_empty()) {
                "-.-"
            } else {
                "---"
            };
            let _ = writeln!(
                out,
                "  {} {arrow}|{}| {}",
                ids[&format!("ns:{}", a.namespace)],
                q(&label),
                ids[&format!("ns:{}", b.namespace)]
            );
        }
        out
    }
}

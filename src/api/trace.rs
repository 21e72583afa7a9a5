//! `nsnet trace SRC DST`: why a packet from SRC does or does not reach
//! DST, hop by hop: each namespace's route lookup (the kernel's), the
//! bridge or link it crosses, every filter base chain it meets in the host
//! (nsnet's table and every other, by priority; `firewall::walk`), the
//! DNAT of a published port, and at the end whether something listens.
//! The cause of a drop is named in the record's terms (isolated networks,
//! icc, direct-access protection, a route nsnet made that is gone).
//!
//! nat chains are not walked (they translate, they do not drop): the DNAT
//! of published ports comes from the record. Chains of type filter with a
//! priority below dstnat (-100) see the packet before DNAT, the others
//! after it, as in the kernel.

use std::net::IpAddr;

use serde::Serialize;

use super::{Nsnet, Result};
pub use crate::firewall::walk::{By, ChainOutcome, Hook, Verdict, L4};
use crate::firewall::walk::{Packet, Ruleset};
use crate::host::Probe;
pub use crate::kernel::nftrace::{Event, Outcome};
use crate::model::lab::Endpoint;
use crate::model::ports::Protocol;
use crate::model::{Network, NsRef, Rejection, State};
use crate::plan::Target;

/// Where the packet starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Namespace(String),
    Host,
    /// Entering the host on an interface, from `addr` (an upstream client).
    Upstream {
        ifname: String,
        addr: Option<IpAddr>,
    },
}

impl std::str::FromStr for Source {
    type Err = Rejection;
    fn from_str(s: &str) -> std::result::Result<Source, Rejection> {
        if s == "host" {
            return Ok(Source::Host);
        }
        let Some(rest) = s.strip_prefix("from:") else {
            crate::model::nsref::validate_name(s)?;
            return Ok(Source::Namespace(s.to_string()));
        };
        let (ifname, addr) = match rest.split_once('@') {
            Some((i, a)) => (
                i,
                Some(crate::model::rejection::parse_ip(a, "source address")?),
            ),
            None => (rest, None),
        };
        crate::model::names::validate_ifname(ifname)?;
        Ok(Source::Upstream {
            ifname: ifname.to_string(),
            addr,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub src: Source,
    /// A namespace, a name nsnet's DNS answers, an address, or `host:PORT`.
    pub dst: String,
    pub port: Option<u16>,
    pub l4: L4,
    /// Also send a real packet and read what the kernel did with it.
    pub probe: bool,
}

/// What a real packet met (`--probe`).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub outcome: Outcome,
    /// The host's trace events: each rule that gave a verdict, each
    /// policy, in the order the packet met them (the probe's own rule
    /// left out).
    pub events: Vec<Event>,
    /// Whether the explanation and the probe say the same.
    pub agrees: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One step of the path.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Hop {
    /// A namespace's route lookup (`host` for the host's).
    Route {
        namespace: String,
        to: IpAddr,
        dev: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<IpAddr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<IpAddr>,
    },
    /// The packet crosses a veth, a bridge or a switch.
    Cross {
        what: String,
    },
    /// The host's filter chains of one hook.
    Chains {
        hook: Hook,
        chains: Vec<ChainOutcome>,
    },
    Dnat {
        published: String,
        to: String,
    },
    /// The destination is this namespace's own address.
    Arrive {
        namespace: String,
    },
    Listen {
        namespace: String,
        port: u16,
        listening: bool,
    },
    /// The packet leaves the host towards the outside.
    Leave {
        dev: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub from: String,
    pub to: String,
    pub address: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub protocol: L4,
    pub hops: Vec<Hop>,
    pub reached: bool,
    /// Why it does not arrive, in words a user can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Matches the walk could not evaluate (the verdict may differ there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsure: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
}

/// Where the packet is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum At {
    Ns { name: String, first: bool },
    Host { iif: Option<String> },
}

const MAX_HOPS: usize = 32;

impl Nsnet {
    pub fn trace(&self, req: &Request) -> Result<Trace> {
        self.require_root("trace packets")?;
        if req.probe {
            if let Source::Upstream { ifname, .. } = &req.src {
                return Err(Rejection::UnknownTraceEnd {
                    role: "from",
                    value: format!("from:{ifname}"),
                    reason: "--probe sends its packet from a namespace or the host, not as an outside client".into(),
                }
                .into());
            }
        }
        let state = self.state()?;
        let mut host = self.host();
        // Every table, indexed once for all the hooks the path meets.
        let listing = host.ruleset()?;
        let tracer = Tracer::new(&state, &mut *host, Ruleset::new(&listing), req)?;
        let (src, dst) = (tracer.pkt.src, tracer.origin());
        let mut trace = tracer.run()?;
        if req.probe {
            let ns = match &req.src {
                Source::Namespace(n) => Some(NsRef::Named(n.clone())),
                _ => None,
            };
            let from = match (&ns, trace.hops.first()) {
                (
                    _,
                    Some(Hop::Route {
                        source: Some(s), ..
                    }),
                ) => *s,
                (Some(_), _) => src,
                (None, _) => host
                    .route_get(&Target::Host, dst.ip())?
                    .and_then(|r| r.source)
                    .unwrap_or(src),
            };
            let l4proto = match (req.l4, dst.is_ipv4()) {
                (L4::Tcp, _) => 6,
                (L4::Udp, _) => 17,
                (L4::Icmp, true) => 1,
                (L4::Icmp, false) => 58,
            };
            let (outcome, events) = host.send_probe(ns.as_ref(), from, dst, l4proto)?;
            trace.probe = Some(compare(&trace, outcome, events));
        }
        Ok(trace)
    }
}

struct Tracer<'a> {
    state: &'a State,
    probe: &'a mut dyn Probe,
    ruleset: Ruleset<'a>,
    pkt: Packet,
    /// The DNAT of a published port.
    dnat: Option<Dnat>,
    out: Trace,
}

fn unknown(role: &'static str, value: &str, reason: impl Into<String>) -> Rejection {
    Rejection::UnknownTraceEnd {
        role,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl<'a> Tracer<'a> {
    fn new(
        state: &'a State,
        probe: &'a mut dyn Probe,
        ruleset: Ruleset<'a>,
        req: &Request,
    ) -> Result<Tracer<'a>> {
        let from = match &req.src {
            Source::Namespace(n) => {
                if !probe.namespace_exists(&NsRef::Named(n.clone()))? {
                    return Err(unknown("from", n, "no such namespace").into());
                }
                n.clone()
            }
            Source::Host => "host".into(),
            Source::Upstream { ifname, .. } => format!("from:{ifname}"),
        };
        let (dst, dnat, port) = destination(state, &mut *probe, req)?;
        let l4 = req.l4;
        let port = match l4 {
            L4::Icmp => None,
            _ => port.or(req.port).or(Some(80)),
        };
        let iif = match &req.src {
            Source::Upstream { ifname, .. } => Some(ifname.clone()),
            _ => None,
        };
        let src = match &req.src {
            Source::Upstream { addr: Some(a), .. } => *a,
            Source::Upstream { ifname, .. } => upstream_client(&mut *probe, ifname, dst)?,
            _ => unspecified(dst),
        };
        let pkt = Packet {
            src,
            dst,
            l4,
            sport: 40000,
            dport: port.unwrap_or(0),
            iif,
            oif: None,
            dnat: false,
        };
        Ok(Tracer {
            state,
            probe,
            ruleset,
            out: Trace {
                from,
                to: req.dst.clone(),
                address: dst,
                port,
                protocol: l4,
                hops: Vec::new(),
                reached: false,
                cause: None,
                unsure: Vec::new(),
                probe: None,
            },
            pkt,
            dnat,
        })
    }

    /// The destination as the source sends it (before any DNAT).
    fn origin(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.pkt.dst, self.pkt.dport)
    }

    fn run(mut self) -> Result<Trace> {
        let mut at = match &self.out.from {
            f if f == "host" => At::Host { iif: None },
            f if f.starts_with("from:") => At::Host {
                iif: self.pkt.iif.clone(),
            },
            f => At::Ns {
                name: f.clone(),
                first: true,
            },
        };
        for _ in 0..MAX_HOPS {
            let next = match at {
                At::Ns { name, first } => self.in_namespace(&name, first)?,
                At::Host { iif } => self.in_host(iif)?,
            };
            match next {
                Some(n) => at = n,
                None => return Ok(self.out),
            }
        }
        self.fail("the path loops (more than 32 hops)".into());
        Ok(self.out)
    }

    fn fail(&mut self, cause: String) {
        self.out.reached = false;
        self.out.cause = Some(cause);
    }

    fn ifname(&mut self, target: &Target, index: u32) -> Result<String> {
        Ok(self
            .probe
            .links(target)?
            .into_iter()
            .find(|l| l.index == index)
            .map_or_else(|| format!("if{index}"), |l| l.name))
    }

    /// The packet in a namespace: its route lookup, and where that leads.
    fn in_namespace(&mut self, ns: &str, first: bool) -> Result<Option<At>> {
        let target = Target::Ns(NsRef::Named(ns.to_string()));
        let Some(route) = self.probe.route_get(&target, self.pkt.dst)? else {
            let cause = self.no_route(ns);
            self.fail(cause);
            return Ok(None);
        };
        if route.local {
            self.out.hops.push(Hop::Arrive {
                namespace: ns.to_string(),
            });
            return self.arrive(&target, ns);
        }
        if first {
            self.pkt.src = route.source.unwrap_or(self.pkt.src);
        } else if !self.state.lab_namespaces.get(ns).is_some_and(|r| r.forward) {
            self.fail(format!(
                "{ns} does not forward packets (give it forward = true, or `nsnet ns add {ns} --forward`)"
            ));
            return Ok(None);
        }
        let dev = match route.oif {
            Some(i) => self.ifname(&target, i)?,
            None => String::new(),
        };
        self.out.hops.push(Hop::Route {
            namespace: ns.to_string(),
            to: self.pkt.dst,
            dev: dev.clone(),
            via: route.gateway,
            source: route.source,
        });
        let next_hop = route.gateway.unwrap_or(self.pkt.dst);
        self.leave_namespace(ns, &dev, next_hop)
    }

    /// Where a namespace's interface leads: a network's bridge in the
    /// host, or the other end of a link (through a switch, to the
    /// namespace that has the next hop).
    fn leave_namespace(&mut self, ns: &str, dev: &str, next_hop: IpAddr) -> Result<Option<At>> {
        let named = NsRef::Named(ns.to_string());
        if let Some((net, _)) = self
            .state
            .attachments_of(&named)
            .find(|(_, a)| a.ifname == dev)
        {
            if !net.has_bridge() {
                let network = net.name.clone();
                return self.across_lan(ns, dev, &network, next_hop);
            }
            self.out.hops.push(Hop::Cross {
                what: format!(
                    "{ns}:{dev} into bridge {} of network {}",
                    net.bridge, net.name
                ),
            });
            return Ok(Some(At::Host {
                iif: Some(net.bridge.clone()),
            }));
        }
        let end = Endpoint {
            namespace: ns.to_string(),
            ifname: dev.to_string(),
        };
        let Some(link) = self.state.links.iter().find(|l| l.has_end(&end)) else {
            self.fail(format!(
                "{ns} sends it out of {dev}, which nsnet did not make (no network or link of nsnet's)"
            ));
            return Ok(None);
        };
        let other = if link.ends[0] == end {
            &link.ends[1]
        } else {
            &link.ends[0]
        };
        if !crate::plan::lab::is_switch(self.state, &other.namespace) {
            self.out.hops.push(Hop::Cross {
                what: format!("link {end} -> {other}"),
            });
            return Ok(Some(At::Ns {
                name: other.namespace.clone(),
                first: false,
            }));
        }
        match self.across_switches(&other.namespace, next_hop) {
            Some((holder, port)) => {
                self.out.hops.push(Hop::Cross {
                    what: format!("switch {} -> {holder}", port.namespace),
                });
                Ok(Some(At::Ns {
                    name: holder,
                    first: false,
                }))
            }
            None => {
                self.fail(format!(
                    "nothing on switch {} (and the switches linked to it) has {next_hop}",
                    other.namespace
                ));
                Ok(None)
            }
        }
    }

    /// From a namespace's interface on a network on the LAN: another
    /// namespace of the network (macvlan bridge or vepa mode, never
    /// private), the host's own interface on it, or out onto the LAN.
    /// nsnet's firewall is on none of these paths.
    fn across_lan(
        &mut self,
        ns: &str,
        dev: &str,
        network: &str,
        next_hop: IpAddr,
    ) -> Result<Option<At>> {
        use crate::model::lan::MacvlanMode;
        let state: &'a State = self.state;
        let net = &state.networks[network];
        let name = &net.name;
        let m = net.macvlan();
        if let Some(h) = m.and_then(|m| m.host_access.as_ref()) {
            if h.addresses.iter().any(|a| a.addr() == next_hop) {
                self.out.hops.push(Hop::Cross {
                    what: format!(
                        "{ns}:{dev} -> the host's interface {} on network {name}",
                        h.ifname
                    ),
                });
                return Ok(Some(At::Host {
                    iif: Some(h.ifname.clone()),
                }));
            }
        }
        let holder = net
            .attachments
            .iter()
            .filter(|a| a.namespace.to_string() != ns)
            .find(|a| a.addresses.iter().any(|x| x.addr() == next_hop));
        match (holder, m.map(|m| m.mode)) {
            (Some(_), Some(MacvlanMode::Private)) => {
                self.fail(format!(
                    "network {name} is a private macvlan network: the kernel passes nothing between its namespaces (--mode bridge lets them talk)"
                ));
                Ok(None)
            }
            (Some(a), mode) => {
                let how = match mode {
                    Some(MacvlanMode::Vepa) => "through the LAN's switch (vepa mode)",
                    _ => "inside the host (macvlan bridge mode)",
                };
                self.out.hops.push(Hop::Cross {
                    what: format!(
                        "{ns}:{dev} -> {}:{} on network {name}, {how}",
                        a.namespace, a.ifname
                    ),
                });
                Ok(Some(At::Ns {
                    name: a.namespace.to_string(),
                    first: false,
                }))
            }
            (None, _) => {
                let parent = net.lan.as_ref().map_or("", |l| l.host_interface());
                self.out.hops.push(Hop::Leave {
                    dev: format!("{parent} onto the LAN of network {name} (towards {next_hop})"),
                });
                self.out.reached = true;
                Ok(None)
            }
        }
    }

    /// The namespace on the switches reachable from `switch` whose link
    /// end has `addr`, and the switch port it hangs off.
    fn across_switches(&self, switch: &str, addr: IpAddr) -> Option<(String, Endpoint)> {
        let is_switch = |ns: &str| crate::plan::lab::is_switch(self.state, ns);
        let mut seen = vec![switch.to_string()];
        let mut i = 0;
        while i < seen.len() {
            let sw = seen[i].clone();
            i += 1;
            for l in self.state.links.iter().filter(|l| l.uses_namespace(&sw)) {
                for (k, e) in l.ends.iter().enumerate() {
                    let port = &l.ends[1 - k];
                    if port.namespace != sw || e.namespace == sw {
                        continue;
                    }
                    if is_switch(&e.namespace) {
                        if !seen.contains(&e.namespace) {
                            seen.push(e.namespace.clone());
                        }
                    } else if l.addresses[k].iter().any(|a| a.addr() == addr) {
                        return Some((e.namespace.clone(), port.clone()));
                    }
                }
            }
        }
        None
    }

    /// Why `ns` has no route: a route nsnet made that the kernel lost, or
    /// none at all.
    fn no_route(&self, ns: &str) -> String {
        let dst = self.pkt.dst;
        let recorded = self
            .state
            .lab_namespaces
            .get(ns)
            .and_then(|r| r.routes.iter().find(|r| r.destination.contains(&dst)));
        if let Some(r) = recorded {
            return format!(
                "no route to {dst} in {ns}: the route {r} nsnet made there is gone (`nsnet check`; `nsnet up` or `nsnet route add {ns} {r}` puts it back)"
            );
        }
        let named = NsRef::Named(ns.to_string());
        if let Some((net, _)) = self.state.attachments_of(&named).find(|(n, _)| n.internal) {
            return format!(
                "no route to {dst} in {ns}: network {} is internal (no default route, nothing leaves it)",
                net.name
            );
        }
        format!("no route to {dst} in {ns}")
    }

    /// The packet in the host, having come in on `iif` (none: sent by the
    /// host itself).
    fn in_host(&mut self, iif: Option<String>) -> Result<Option<At>> {
        self.pkt.iif = iif.clone();
        self.pkt.oif = None;
        let first_hook = if iif.is_some() {
            Hook::Prerouting
        } else {
            Hook::Output
        };
        if !self.chains(first_hook, i64::MIN..-100) {
            return Ok(None);
        }
        if let Some((published, to, port)) = self.dnat.take() {
            self.out.hops.push(Hop::Dnat {
                published,
                to: format!("{to} port {port}"),
            });
            self.pkt.dst = to;
            self.pkt.dport = port;
            self.pkt.dnat = true;
            self.out.address = to;
        }
        if !self.chains(first_hook, -100..i64::MAX) {
            return Ok(None);
        }
        let bridged = iif
            .as_deref()
            .and_then(|i| self.network_of_bridge(i))
            .filter(|n| n.subnets.iter().any(|s| s.cidr.contains(&self.pkt.dst)))
            .map(|n| n.bridge.clone());
        let oif = match bridged {
            Some(b) => b,
            None => match self.probe.route_get(&Target::Host, self.pkt.dst)? {
                None => {
                    let dst = self.pkt.dst;
                    self.fail(format!("no route to {dst} in the host"));
                    return Ok(None);
                }
                Some(r) if r.local => return self.reach_host(),
                Some(r) => {
                    let dev = match r.oif {
                        Some(i) => self.ifname(&Target::Host, i)?,
                        None => String::new(),
                    };
                    self.out.hops.push(Hop::Route {
                        namespace: "host".into(),
                        to: self.pkt.dst,
                        dev: dev.clone(),
                        via: r.gateway,
                        source: r.source,
                    });
                    dev
                }
            },
        };
        self.pkt.oif = Some(oif.clone());
        if iif.is_some() && !self.chains(Hook::Forward, i64::MIN..i64::MAX) {
            return Ok(None);
        }
        if !self.chains(Hook::Postrouting, i64::MIN..i64::MAX) {
            return Ok(None);
        }
        self.onto_bridge(&oif)
    }

    /// From the host's interface `oif` on: a network's namespace, or out.
    fn onto_bridge(&mut self, oif: &str) -> Result<Option<At>> {
        if let Some(net) = self.network_of_host_access(oif) {
            return Ok(self.through_host_access(oif, net));
        }
        let Some(net) = self.network_of_bridge(oif) else {
            self.out.hops.push(Hop::Leave {
                dev: oif.to_string(),
            });
            self.out.reached = true;
            return Ok(None);
        };
        let dst = self.pkt.dst;
        let holder = net
            .attachments
            .iter()
            .find(|a| a.addresses.iter().any(|x| x.addr() == dst))
            .map(|a| (a.namespace.to_string(), a.ifname.clone()));
        let name = net.name.clone();
        match holder {
            Some((ns, ifname)) => {
                self.out.hops.push(Hop::Cross {
                    what: format!("bridge {oif} of network {name} -> {ns}:{ifname}"),
                });
                Ok(Some(At::Ns {
                    name: ns,
                    first: false,
                }))
            }
            None => {
                self.fail(format!("no namespace on network {name} has {dst}"));
                Ok(None)
            }
        }
    }

    /// The host's own address: its input chains, then who listens.
    fn reach_host(&mut self) -> Result<Option<At>> {
        if self.pkt.iif.is_some() && !self.chains(Hook::Input, i64::MIN..i64::MAX) {
            return Ok(None);
        }
        self.out.hops.push(Hop::Arrive {
            namespace: "host".into(),
        });
        self.arrive(&Target::Host, "host")
    }

    fn network_of_bridge(&self, ifname: &str) -> Option<&'a Network> {
        self.state
            .networks
            .values()
            .find(|n| n.has_bridge() && n.bridge == ifname)
    }

    /// The macvlan network whose host-access interface is `ifname`.
    fn network_of_host_access(&self, ifname: &str) -> Option<&'a Network> {
        self.state.networks.values().find(|n| {
            n.macvlan()
                .and_then(|m| m.host_access.as_ref())
                .is_some_and(|h| h.ifname == ifname)
        })
    }

    /// From the host's interface on a macvlan network to the namespace
    /// that has the destination.
    fn through_host_access(&mut self, oif: &str, net: &'a Network) -> Option<At> {
        let dst = self.pkt.dst;
        let Some(a) = net
            .attachments
            .iter()
            .find(|a| a.addresses.iter().any(|x| x.addr() == dst))
        else {
            self.fail(format!("no namespace on network {} has {dst}", net.name));
            return None;
        };
        self.out.hops.push(Hop::Cross {
            what: format!(
                "the host's interface {oif} on network {} -> {}:{}",
                net.name, a.namespace, a.ifname
            ),
        });
        Some(At::Ns {
            name: a.namespace.to_string(),
            first: false,
        })
    }

    /// Arrived: for TCP and UDP, whether something listens on the port.
    fn arrive(&mut self, target: &Target, ns: &str) -> Result<Option<At>> {
        let protocol = match self.pkt.l4 {
            L4::Tcp => Protocol::Tcp,
            L4::Udp => Protocol::Udp,
            L4::Icmp => {
                self.out.reached = true;
                return Ok(None);
            }
        };
        let port = self.pkt.dport;
        let listening = self.probe.listening(target, protocol, port)?;
        self.out.hops.push(Hop::Listen {
            namespace: ns.to_string(),
            port,
            listening,
        });
        if listening {
            self.out.reached = true;
        } else {
            let p = if protocol == Protocol::Tcp {
                "tcp"
            } else {
                "udp"
            };
            self.fail(format!("nothing listens on {ns}:{port} ({p})"));
        }
        Ok(None)
    }

    /// Walks the filter chains of `hook` with a priority in `prios`;
    /// false when one drops (the cause is then set).
    fn chains(&mut self, hook: Hook, prios: std::ops::Range<i64>) -> bool {
        let chains = self.ruleset.walk_filtered(hook, &self.pkt, |c| {
            c["type"] != "nat" && prios.contains(&c["prio"].as_i64().unwrap_or(0))
        });
        if chains.is_empty() {
            return true;
        }
        for c in &chains {
            self.out.unsure.extend(c.unsure.iter().cloned());
        }
        let dropped = chains.iter().find(|c| c.stops()).cloned();
        self.out.hops.push(Hop::Chains { hook, chains });
        match dropped {
            None => true,
            Some(c) => {
                let cause = self.drop_cause(&c);
                self.fail(cause);
                false
            }
        }
    }

    /// A drop in the record's words where it is nsnet's rule.
    fn drop_cause(&self, c: &ChainOutcome) -> String {
        let how = if c.verdict == Verdict::Reject {
            "rejected"
        } else {
            "dropped"
        };
        let (chain, handle, comment) = match &c.by {
            By::Policy => {
                return format!(
                    "{how} by table {} {} chain {} policy drop (not nsnet's: {})",
                    c.family,
                    c.table,
                    c.chain,
                    self.owner_of(c)
                )
            }
            By::Rule {
                chain,
                handle,
                comment,
            } => (chain, handle, comment),
        };
        if c.table != crate::firewall::rules::TABLE {
            let rule = handle.map_or_else(String::new, |h| format!(" rule handle {h}"));
            return format!(
                "{how} by table {} {} chain {chain}{rule} (not nsnet's: {})",
                c.family,
                c.table,
                self.owner_of(c)
            );
        }
        let net = comment
            .as_deref()
            .and_then(|t| t.strip_prefix("nsnet network "))
            .and_then(|n| self.state.networks.get(n));
        match net {
            Some(net) => self.nsnet_cause(net, chain),
            None => format!(
                "{how} by nsnet's rule in chain {chain} ({})",
                comment.as_deref().unwrap_or("no comment")
            ),
        }
    }

    /// Why a rule of nsnet's for network `net` dropped the packet.
    fn nsnet_cause(&self, net: &Network, chain: &str) -> String {
        let (iif, oif) = (
            self.pkt.iif.as_deref().unwrap_or(""),
            self.pkt.oif.as_deref().unwrap_or(""),
        );
        let name = &net.name;
        let other = [iif, oif]
            .into_iter()
            .filter(|b| *b != net.bridge)
            .find_map(|b| self.network_of_bridge(b));
        let isolating: Vec<&str> = other
            .into_iter()
            .chain([net])
            .filter(|n| n.isolate)
            .map(|n| n.name.as_str())
            .collect();
        let crossing = !isolating.is_empty() && !net.internal && !other.is_some_and(|o| o.internal);
        if let (Some(o), true) = (other, crossing) {
            let (a, b) = if net.name < o.name {
                (net, o)
            } else {
                (o, net)
            };
            return format!(
                "dropped: networks {} and {} are isolated ({} isolate=true; `--no-isolate` on both opts out)",
                a.name,
                b.name,
                if isolating.len() == 2 {
                    "both have".to_string()
                } else {
                    format!("{} has", isolating.join(""))
                }
            );
        }
        if chain == crate::firewall::rules::RAW_PREROUTING {
            if self.pkt.dport == 53 {
                return format!(
                    "dropped: the DNS server of network {name} answers its own namespaces only"
                );
            }
            return format!(
                "dropped: direct-access protection of network {name} (gateway mode {}): its addresses are reachable from outside the bridge only through published ports (publish the port, or --gateway-mode routed)",
                net.mode(self.pkt.v4())
            );
        }
        if net.internal {
            return format!(
                "dropped: network {name} is internal: nothing is forwarded into or out of it"
            );
        }
        if iif == net.bridge && oif == net.bridge {
            return format!(
                "dropped: network {name} has icc=false: its namespaces reach each other only through published ports"
            );
        }
        format!(
            "dropped: network {name} accepts no new connections from outside (gateway mode {}) but to published ports",
            net.mode(self.pkt.v4())
        )
    }

    /// Whose table a foreign chain is, as far as names tell.
    fn owner_of(&self, c: &ChainOutcome) -> &'static str {
        if self.ruleset.has_chain(&c.family, &c.table, "DOCKER")
            || self.ruleset.has_chain(&c.family, &c.table, "DOCKER-USER")
        {
            "Docker's"
        } else if c.table == "firewalld" {
            "firewalld's"
        } else {
            "another program's or an administrator's"
        }
    }
}

/// The probe's report: its events (without its own table's), and whether
/// they and what came back agree with the explanation.
fn compare(t: &Trace, outcome: Outcome, events: Vec<Event>) -> ProbeReport {
    let own = crate::kernel::nftrace::table_name();
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| {
            e.table != own && (e.kind == "policy" || e.verdict == "accept" || e.verdict == "drop")
        })
        .collect();
    let kernel_drop = events.iter().find(|e| e.verdict == "drop");
    let nothing_listens = t
        .cause
        .as_deref()
        .is_some_and(|c| c.starts_with("nothing listens"));
    let mut agrees = match outcome {
        Outcome::Connected | Outcome::Answered => t.reached,
        Outcome::Refused => nothing_listens,
        Outcome::NoAnswer => !t.reached && !nothing_listens,
        Outcome::NoRoute => t
            .cause
            .as_deref()
            .is_some_and(|c| c.starts_with("no route")),
    };
    let explained_drop = t.hops.iter().rev().find_map(|h| match h {
        Hop::Chains { chains, .. } => chains.iter().find(|c| c.stops()),
        _ => None,
    });
    if let (Some(k), Some(e)) = (kernel_drop, explained_drop) {
        agrees &= k.table == e.table && k.family == e.family;
    }
    let note = (!agrees).then(|| {
        let kernel = match kernel_drop {
            Some(k) => format!(
                "the kernel dropped it in table {} {} chain {}",
                k.family, k.table, k.chain
            ),
            None => format!("the probe got: {outcome:?}").to_lowercase(),
        };
        let said = if t.reached {
            "reached".to_string()
        } else {
            t.cause.clone().unwrap_or_else(|| "not reached".into())
        };
        format!("the explanation and the probe disagree: the explanation says {said}; {kernel}")
    });
    ProbeReport {
        outcome,
        events,
        agrees,
        note,
    }
}

/// 0.0.0.0 or :: of the destination's family, until the source's route
/// lookup picks the address.
fn unspecified(dst: IpAddr) -> IpAddr {
    match dst {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// A client on the interface's subnet: the first address of it that is
/// not the host's.
fn upstream_client(probe: &mut dyn Probe, ifname: &str, dst: IpAddr) -> Result<IpAddr> {
    let link = probe.link(&Target::Host, ifname)?.ok_or_else(|| {
        unknown(
            "from",
            &format!("from:{ifname}"),
            "the host has no such interface",
        )
    })?;
    let addrs = probe.addresses(&Target::Host)?;
    let mine: Vec<_> = addrs
        .iter()
        .filter(|a| a.index == link.index && a.addr.addr().is_ipv4() == dst.is_ipv4())
        .collect();
    let Some(first) = mine.first() else {
        return Err(unknown(
            "from",
            &format!("from:{ifname}"),
            "the interface has no address of that family: give the client's, from:IF@ADDR",
        )
        .into());
    };
    Ok(first
        .addr
        .hosts()
        .find(|h| !mine.iter().any(|m| m.addr.addr() == *h))
        .unwrap_or(first.addr.addr()))
}

/// A published port's DNAT: what was published, the address and port it
/// leads to.
type Dnat = (String, IpAddr, u16);

/// The destination address, the DNAT of a published port, and the port.
type Destination = (IpAddr, Option<Dnat>, Option<u16>);

/// The destination address, the DNAT of a published port, and the port.
fn destination(state: &State, probe: &mut dyn Probe, req: &Request) -> Result<Destination> {
    let dst = req.dst.as_str();
    if let Some(port) = dst.strip_prefix("host:") {
        return published(state, probe, req, port);
    }
    if let Ok(addr) = dst.parse::<IpAddr>() {
        return Ok((addr, None, None));
    }
    let named = NsRef::Named(dst.to_string());
    let from = match &req.src {
        Source::Namespace(n) => Some(NsRef::Named(n.clone())),
        _ => None,
    };
    // A namespace: its address on a network it shares with the source,
    // else its first (IPv4 first).
    let mut candidates: Vec<(bool, IpAddr)> = state
        .attachments_of(&named)
        .flat_map(|(net, a)| {
            let shared = from
                .as_ref()
                .is_some_and(|f| net.attachments.of_namespace(f).next().is_some());
            a.addresses.iter().map(move |x| (shared, x.addr()))
        })
        .chain(state.links.iter().flat_map(|l| {
            l.ends
                .iter()
                .zip(&l.addresses)
                .filter(|(e, _)| e.namespace == dst)
                .flat_map(|(_, addrs)| addrs.iter().map(|x| (false, x.addr())))
        }))
        .collect();
    candidates.sort_by_key(|(shared, a)| (!shared, !a.is_ipv4()));
    if let Some((_, addr)) = candidates.first() {
        return Ok((*addr, None, None));
    }
    let table = crate::dns::records::Table::from_state(state);
    let lower = dst.trim_end_matches('.').to_ascii_lowercase();
    for zone in &table.zones {
        if let Some(Some(addrs)) = zone.lookup(&lower) {
            if let Some(a) = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
                return Ok((*a, None, None));
            }
        }
    }
    Err(unknown(
        "to",
        dst,
        "not a namespace, address, name nsnet's DNS answers, or host:PORT",
    )
    .into())
}

/// `host:PORT`: the host's address the packet is sent to, and the DNAT to
/// the namespace that publishes the port.
fn published(
    state: &State,
    probe: &mut dyn Probe,
    req: &Request,
    port: &str,
) -> Result<Destination> {
    let host_port: u16 = port
        .parse()
        .map_err(|_| unknown("to", &req.dst, "PORT is a number, as in host:8080"))?;
    let protocol = match req.l4 {
        L4::Udp => Protocol::Udp,
        _ => Protocol::Tcp,
    };
    // The host's address: on the upstream interface the packet comes in
    // on; for a namespace, its network's gateway (the host's address on
    // its bridge); for the host itself, loopback.
    let host_addr = match &req.src {
        Source::Namespace(n) => state
            .attachments_of(&NsRef::Named(n.clone()))
            .find_map(|(net, _)| net.subnets.iter().find(|s| s.gateway.is_ipv4()))
            .map(|s| s.gateway),
        Source::Upstream { ifname, .. } => {
            let link = probe.link(&Target::Host, ifname)?;
            let index = link.map(|l| l.index);
            probe
                .addresses(&Target::Host)?
                .into_iter()
                .find(|a| Some(a.index) == index && a.addr.addr().is_ipv4())
                .map(|a| a.addr.addr())
        }
        _ => None,
    }
    .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    for net in state.networks.values() {
        for a in &net.attachments {
            for m in &a.ports {
                let covers = m.protocol == protocol
                    && (m.host_port..m.host_port.saturating_add(m.count.max(1)))
                        .contains(&host_port)
                    && m.host_ip.is_none_or(|ip| ip == host_addr);
                let to = a.addresses.iter().map(|x| x.addr()).find(|x| x.is_ipv4());
                if let (true, Some(to)) = (covers, to) {
                    let cport = m.port + (host_port - m.host_port);
                    let what = format!(
                        "{host_addr} port {host_port} (published by {})",
                        a.namespace
                    );
                    return Ok((host_addr, Some((what, to, cport)), Some(host_port)));
                }
            }
        }
    }
    Err(unknown(
        "to",
        &req.dst,
        format!("no namespace publishes port {host_port}"),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::Fake;
    use crate::kernel::netlink::RouteLookup;
    use crate::model::{ConnectRequest, CreateRequest};
    use serde_json::json;

    /// Two namespaces on network front, on a fake machine whose kernel
    /// answers the route lookups as Linux would.
    fn bed() -> (Fake, Nsnet, tempfile::TempDir) {
        let fake = Fake::default();
        let dir = tempfile::tempdir().unwrap();
        let nsnet = Nsnet::on(dir.path(), Box::new(fake.clone()));
        nsnet
            .create_network(&CreateRequest {
                dns: false,
                ..CreateRequest::for_test("front", &["10.80.0.0/24"])
            })
            .unwrap();
        for n in ["a", "b"] {
            nsnet
                .connect(&ConnectRequest::new("front", NsRef::Named(n.into())))
                .unwrap();
        }
        let b_addr: IpAddr = "10.80.0.3".parse().unwrap();
        let mut s = fake.state();
        let a = Target::Ns(NsRef::Named("a".into()));
        let eth0 = s.probe.link(&a, "eth0").unwrap().unwrap().index;
        s.probe.route_answers = vec![
            (
                a,
                b_addr,
                Some(RouteLookup {
                    local: false,
                    oif: Some(eth0),
                    gateway: None,
                    source: Some("10.80.0.2".parse().unwrap()),
                }),
            ),
            (
                Target::Ns(NsRef::Named("b".into())),
                b_addr,
                Some(RouteLookup {
                    local: true,
                    oif: None,
                    gateway: None,
                    source: None,
                }),
            ),
        ];
        drop(s);
        (fake, nsnet, dir)
    }

    fn request(port: u16) -> Request {
        Request {
            src: Source::Namespace("a".into()),
            dst: "b".into(),
            port: Some(port),
            l4: L4::Tcp,
            probe: false,
        }
    }

    #[test]
    fn a_path_across_a_bridge_arrives_where_something_listens() {
        let (fake, nsnet, _dir) = bed();
        fake.state()
            .probe
            .listening
            .push((Target::Ns(NsRef::Named("b".into())), 80));
        let t = nsnet.trace(&request(80)).unwrap();
        assert!(t.reached, "{t:?}");
        assert_eq!(t.address, "10.80.0.3".parse::<IpAddr>().unwrap());
        assert!(matches!(
            t.hops.last(),
            Some(Hop::Listen {
                listening: true,
                ..
            })
        ));
        let t = nsnet.trace(&request(81)).unwrap();
        assert!(!t.reached);
        assert_eq!(t.cause.as_deref(), Some("nothing listens on b:81 (tcp)"));
    }

    #[test]
    fn a_drop_by_nsnets_rule_is_explained_from_the_record() {
        let (fake, nsnet, _dir) = bed();
        fake.state().probe.ruleset = Some(json!({"nftables": [
            {"chain": {"family": "inet", "table": "nsnet", "name": "forward", "hook": "forward", "prio": 0, "policy": "accept", "type": "filter"}},
            {"rule": {"family": "inet", "table": "nsnet", "chain": "forward", "handle": 7, "comment": "nsnet network front", "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "front"}},
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "front"}},
                {"drop": null}]}},
        ]}));
        let t = nsnet.trace(&request(80)).unwrap();
        assert!(!t.reached);
        assert!(t.cause.unwrap().contains("network front has icc=false"));
        // Another table's policy: named, not blamed on nsnet.
        fake.state().probe.ruleset = Some(json!({"nftables": [
            {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "prio": 0, "policy": "drop", "type": "filter"}},
            {"chain": {"family": "ip", "table": "filter", "name": "DOCKER"}},
        ]}));
        let t = nsnet.trace(&request(80)).unwrap();
        assert_eq!(
            t.cause.as_deref(),
            Some("dropped by table ip filter chain FORWARD policy drop (not nsnet's: Docker's)")
        );
    }

    #[test]
    fn a_probe_that_disagrees_says_so() {
        let (fake, nsnet, _dir) = bed();
        let event = |verdict: &str| Event {
            id: 1,
            family: "inet".into(),
            table: "nsnet".into(),
            chain: "forward".into(),
            handle: Some(7),
            kind: "rule",
            verdict: verdict.into(),
        };
        // The explanation: nothing listens; the kernel: dropped in forward.
        fake.state().probe.probe_result = Some((Outcome::NoAnswer, vec![event("drop")]));
        let t = nsnet
            .trace(&Request {
                probe: true,
                ..request(80)
            })
            .unwrap();
        let p = t.probe.unwrap();
        assert!(!p.agrees);
        let note = p.note.unwrap();
        assert!(note.contains("nothing listens on b:80"), "{note}");
        assert!(
            note.contains("dropped it in table inet nsnet chain forward"),
            "{note}"
        );
        // The same answer the explanation expects: agreement.
        fake.state().probe.probe_result = Some((Outcome::Refused, vec![event("accept")]));
        let t = nsnet
            .trace(&Request {
                probe: true,
                ..request(80)
            })
            .unwrap();
        assert!(t.probe.unwrap().agrees);
        // An outside client cannot be sent as.
        let err = nsnet
            .trace(&Request {
                src: "from:eth0".parse().unwrap(),
                probe: true,
                ..request(80)
            })
            .unwrap_err();
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn sources_parse_and_unknown_ends_are_not_found() {
        assert_eq!("host".parse::<Source>().unwrap(), Source::Host);
        assert_eq!(
            "from:eth0@203.0.113.9".parse::<Source>().unwrap(),
            Source::Upstream {
                ifname: "eth0".into(),
                addr: Some("203.0.113.9".parse().unwrap())
            }
        );
        assert!("from:eth0@nope".parse::<Source>().is_err());
        let (_fake, nsnet, _dir) = bed();
        let err = nsnet
            .trace(&Request {
                dst: "nowhere".into(),
                ..request(80)
            })
            .unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
    }
}

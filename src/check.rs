//! `nsnet check`: the recorded state against the kernel and the firewall,
//! every difference as one sentence. Read-only; `repair` puts back what can
//! be restored without guessing (the firewall table, forwarding sysctls,
//! a bridge that was brought down).

use ipnet::IpNet;
use serde::Serialize;

use crate::error::{require_root, Error, Result};
use crate::kernel::LiveKernel;
use crate::model::{Network, State};
use crate::netlink::LinkKind;
use crate::netns;
use crate::plan::{self, Op, Target};
use crate::{firewall, sysctl, Nsnet};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Things nsnet made that are missing or different.
    pub drift: Vec<String>,
    /// Things of others that get in nsnet's way.
    pub warnings: Vec<String>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.drift.is_empty()
    }
}

fn check_network(net: &Network, kernel: &mut LiveKernel, out: &mut Vec<String>) -> Result<()> {
    let n = &net.name;
    let host = kernel.host()?;
    let links = host.links()?;
    let Some(bridge) = links.iter().find(|l| l.name == net.bridge) else {
        out.push(format!("network {n}: bridge {} is missing", net.bridge));
        return Ok(());
    };
    if bridge.kind != LinkKind::Bridge {
        out.push(format!("network {n}: {} is no longer a bridge", net.bridge));
    }
    if !bridge.up {
        out.push(format!("network {n}: bridge {} is down", net.bridge));
    }
    let addrs: Vec<IpNet> = host
        .addresses()?
        .into_iter()
        .filter(|a| a.index == bridge.index)
        .map(|a| a.addr)
        .collect();
    for s in &net.subnets {
        let gw = IpNet::new(s.gateway, s.cidr.prefix_len()).expect("valid prefix");
        if !addrs.contains(&gw) {
            out.push(format!(
                "network {n}: gateway address {gw} is missing from {}",
                net.bridge
            ));
        }
    }
    for a in &net.attachments {
        let who = format!("network {n}, namespace {}", a.namespace);
        match links.iter().find(|l| l.name == a.host_ifname) {
            None => out.push(format!(
                "{who}: host interface {} is missing",
                a.host_ifname
            )),
            Some(l) if l.master != Some(bridge.index) => out.push(format!(
                "{who}: host interface {} is not on bridge {}",
                a.host_ifname, net.bridge
            )),
            Some(_) => {}
        }
        match a.namespace.open() {
            Err(netns::Error::NotFound(_)) => {
                out.push(format!(
                    "{who}: the namespace is gone (nsnet gc cleans up after it)"
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let inside = kernel.handle(&Target::Ns(a.namespace.clone()))?;
        let Some(link) = inside.links()?.into_iter().find(|l| l.name == a.ifname) else {
            out.push(format!("{who}: interface {} is missing", a.ifname));
            continue;
        };
        if !link.up {
            out.push(format!("{who}: interface {} is down", a.ifname));
        }
        let have: Vec<IpNet> = inside
            .addresses()?
            .into_iter()
            .filter(|x| x.index == link.index)
            .map(|x| x.addr)
            .collect();
        for want in &a.addresses {
            if !have.contains(want) {
                out.push(format!(
                    "{who}: address {want} is missing from {}",
                    a.ifname
                ));
            }
        }
        if !net.internal {
            let routes = inside.routes()?;
            for fam_v4 in [true, false] {
                let needs = net
                    .subnets
                    .iter()
                    .any(|s| s.cidr.addr().is_ipv4() == fam_v4);
                let has = routes.iter().any(|r| {
                    r.destination.prefix_len() == 0 && r.destination.addr().is_ipv4() == fam_v4
                });
                if needs && !has {
                    out.push(format!(
                        "{who}: no {} default route",
                        if fam_v4 { "IPv4" } else { "IPv6" }
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The sysctls the networks need, with the value they need.
fn needed_sysctls(state: &State) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if state.networks.values().any(|n| n.forwards()) {
        out.push((sysctl::IPV4_FORWARD, "1"));
    }
    if state
        .networks
        .values()
        .any(|n| n.forwards() && n.subnet_v6().is_some())
    {
        out.push((sysctl::IPV6_FORWARD, "1"));
    }
    out
}

pub fn check(state: &State, network: Option<&str>) -> Result<Report> {
    if let Some(name) = network {
        if !state.networks.contains_key(name) {
            return Err(Error::NotFound(format!("network {name} does not exist")));
        }
    }
    check_where(state, |n| network.is_none_or(|name| n.name == name))
}

/// `check` for the networks `keep` selects; the sysctls and the firewall
/// table are checked once, whatever the selection.
pub fn check_where(state: &State, keep: impl Fn(&Network) -> bool) -> Result<Report> {
    let mut report = Report::default();
    let mut kernel = LiveKernel::new();
    for net in state.networks.values().filter(|n| keep(n)) {
        check_network(net, &mut kernel, &mut report.drift)?;
    }
    for (key, value) in needed_sysctls(state) {
        if sysctl::read(key).ok().as_deref() != Some(value) {
            report.drift.push(format!("sysctl {key} is not {value}"));
        }
    }
    let live = firewall::list_table().map_err(|e| Error::Kernel(e.into()))?;
    report.drift.extend(firewall::drift(state, live.as_ref()));
    if !state.networks.is_empty() {
        report.warnings = firewall::foreign_forward_drops().map_err(|e| Error::Kernel(e.into()))?;
    }
    Ok(report)
}

impl Nsnet {
    pub fn check(&self, network: Option<&str>) -> Result<Report> {
        check(&self.state()?, network)
    }

    /// Restores the firewall table, the forwarding sysctls and bridges'
    /// up state from the record; then checks again.
    pub fn repair(&self, network: Option<&str>) -> Result<Report> {
        require_root("repair")?;
        let (lock, state) = self.begin()?;
        let mut ops = vec![];
        for net in state.networks.values() {
            if network.is_none_or(|n| n == net.name) {
                ops.push(Op::LinkUp {
                    target: Target::Host,
                    ifname: net.bridge.clone(),
                });
            }
        }
        for (key, value) in needed_sysctls(&state) {
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if !state.networks.is_empty() {
            let full = firewall::render(&state);
            ops.push(Op::Firewall {
                transaction: full.clone(),
                previous: full,
                after: Box::new(state.clone()),
                before: Box::new(state.clone()),
            });
        }
        let mut kernel = LiveKernel::new();
        let errors = plan::teardown(&ops, &mut kernel);
        drop(lock);
        if !errors.is_empty() {
            return Err(Error::Teardown(errors));
        }
        check(&state, network)
    }
}

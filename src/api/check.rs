//! `check` and `check --repair`.

use super::{Nsnet, Result};
use crate::apply;
use crate::check::{self, Report};
use crate::model::{Rejection, State};
use crate::plan::{Op, Target};

impl Nsnet {
    pub fn check(&self, network: Option<&str>) -> Result<Report> {
        let state = self.state()?;
        self.check_all(&state, network)
    }

    /// The record against the kernel, the DNS server, and (for the whole
    /// host) the processes of topology nodes.
    fn check_all(&self, state: &State, network: Option<&str>) -> Result<Report> {
        let mut report = self.check_state(state, network)?;
        self.check_beyond_kernel(state, network.is_none(), &mut report);
        Ok(report)
    }

    /// The DNS server, and for the whole host (`whole`) the processes of
    /// topology nodes.
    pub(super) fn check_beyond_kernel(&self, state: &State, whole: bool, report: &mut Report) {
        self.check_dns(state, report);
        if whole {
            for p in self.exited_processes() {
                report.drift.push(check::Finding::ProcessExited {
                    namespace: p.node,
                    command: p.command,
                    log: p.log.display().to_string(),
                    owner: p.owner,
                });
            }
        }
    }

    /// The DNS server runs when a network needs it.
    fn check_dns(&self, state: &State, report: &mut Report) {
        let needed = !crate::dns::records::listen_addresses(state).is_empty();
        if needed && super::dns::running(self.store.dir()).is_none() {
            report.drift.push(check::Finding::DnsServerDown);
        }
    }

    /// Restores the firewall table, the forwarding sysctls, bridges' (and
    /// the host's macvlan interfaces') up state and the host's routes to
    /// macvlan namespaces from the record; then checks again.
    pub fn repair(&self, network: Option<&str>) -> Result<Report> {
        self.require_root("repair")?;
        let (lock, state) = self.begin()?;
        let mut ops = vec![];
        for net in state.networks.values() {
            if network.is_none_or(|n| n == net.name) {
                let own = match net.macvlan().and_then(|m| m.host_access.as_ref()) {
                    Some(h) => Some(h.ifname.clone()),
                    None => net.has_bridge().then(|| net.bridge.clone()),
                };
                ops.extend(own.map(|ifname| Op::LinkUp {
                    target: Target::Host,
                    ifname,
                }));
            }
        }
        ops.extend(host_routes_missing(
            &self.check_state(&state, network)?,
            &state,
        ));
        for (key, value) in crate::model::sysctl::needed(&state) {
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if !state.networks.is_empty() {
            ops.push(Op::whole_firewall(&state, &state));
        }
        let errors = apply::teardown(&ops, &mut *self.host());
        self.ensure_dns(None, &state)?;
        drop(lock);
        if !errors.is_empty() {
            return Err(super::Error::Teardown(errors));
        }
        self.check_all(&state, network)
    }
}

/// The host's routes to macvlan namespaces that `report` finds missing.
fn host_routes_missing(report: &Report, state: &State) -> Vec<Op> {
    report
        .drift
        .iter()
        .filter_map(|f| match f {
            check::Finding::HostRouteMissing {
                network, address, ..
            } => {
                let h = state
                    .networks
                    .get(network)?
                    .macvlan()?
                    .host_access
                    .as_ref()?;
                Some(Op::Lan(crate::plan::LanOp::AddDeviceRoute {
                    destination: *address,
                    ifname: h.ifname.clone(),
                }))
            }
            _ => None,
        })
        .collect()
}

impl Nsnet {
    /// nsnet's firewall table as the backend lists it (`None`: missing):
    /// whether the backend answers at all.
    pub fn firewall_table(&self) -> Result<Option<serde_json::Value>> {
        Ok(self.host().firewall_table()?)
    }

    /// `check` of one network or all, on the machine.
    pub(super) fn check_state(&self, state: &State, network: Option<&str>) -> Result<Report> {
        if let Some(name) = network {
            if !state.networks.contains_key(name) {
                return Err(Rejection::no_such_network(name, state.networks.keys()).into());
            }
        }
        Ok(check::check_where(
            state,
            |n| network.is_none_or(|name| n.name == name),
            &mut *self.host(),
        )?)
    }
}

//! `check` and `check --repair`.

use super::{require_root, Nsnet, Result};
use crate::apply::{self, LiveKernel};
use crate::check::{self, LiveProbe, Report};
use crate::model::{Rejection, State};
use crate::plan::{Op, Target};

impl Nsnet {
    pub fn check(&self, network: Option<&str>) -> Result<Report> {
        let state = self.state()?;
        let mut report = check_state(&state, network)?;
        self.check_dns(&state, &mut report);
        Ok(report)
    }

    /// The DNS server runs when a network needs it.
    fn check_dns(&self, state: &State, report: &mut Report) {
        let needed = !crate::dns::records::listen_addresses(state).is_empty();
        if needed && super::dns::running(self.store.dir()).is_none() {
            report.drift.push(check::Finding::DnsServerDown);
        }
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
        for (key, value) in check::needed_sysctls(&state) {
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if !state.networks.is_empty() {
            ops.push(Op::whole_firewall(&state, &state));
        }
        let errors = apply::teardown(&ops, &mut LiveKernel::new());
        self.ensure_dns(None, &state)?;
        drop(lock);
        if !errors.is_empty() {
            return Err(super::Error::Teardown(errors));
        }
        let mut report = check_state(&state, network)?;
        self.check_dns(&state, &mut report);
        Ok(report)
    }
}

/// `check` of one network or all, on the live machine.
pub fn check_state(state: &State, network: Option<&str>) -> Result<Report> {
    if let Some(name) = network {
        if !state.networks.contains_key(name) {
            return Err(Rejection::no_such_network(name, state.networks.keys()).into());
        }
    }
    let mut kernel = LiveKernel::new();
    let mut probe = LiveProbe {
        kernel: &mut kernel,
    };
    Ok(check::check_where(
        state,
        |n| network.is_none_or(|name| n.name == name),
        &mut probe,
    )?)
}

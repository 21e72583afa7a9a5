//! `connect` and `disconnect`.

use super::{facts, Mode, Nsnet, Result};
use crate::host::{Host, Probe};
use crate::model::{Attachment, ConnectRequest, Network, NsRef, State};
use crate::plan::attach::{plan_connect_into, plan_disconnect};
use crate::plan::{self, Op};

/// Turns element-wise firewall steps into whole-table ones when the live
/// table is not intact: the fact is gathered only when a step needs it.
pub(crate) fn heal_firewall(ops: &mut [Op], before: &State, probe: &mut dyn Probe) -> Result<()> {
    if plan::needs_intact_table(ops, before) {
        let intact = probe.firewall_intact(before)?;
        plan::heal_firewall(ops, intact);
    }
    Ok(())
}

/// What a CNI ADD reports of an attachment it made.
pub struct Connected {
    pub attachment: Attachment,
    /// The network's record after the change.
    pub network: Network,
    /// The MACs of the host end and the namespace end, as the kernel has
    /// them (empty where it could not tell).
    pub macs: (String, String),
}

fn mac_string(mac: Option<[u8; 6]>) -> String {
    mac.map(|m| crate::model::names::format_mac(&m))
        .unwrap_or_default()
}

/// MACs as the kernel has them now (the namespace end's is set in its
/// namespace): host end, then the namespace's end.
fn link_macs(att: &Attachment, probe: &mut dyn Probe) -> (String, String) {
    let mut mac_of = |target: plan::Target, name: &str| {
        probe.link(&target, name).ok().flatten().and_then(|l| l.mac)
    };
    let host = mac_of(plan::Target::Host, &att.host_ifname);
    let inside = mac_of(plan::Target::Ns(att.namespace.clone()), &att.ifname);
    (mac_string(host), mac_string(inside))
}

impl Nsnet {
    pub fn connect(&self, req: &ConnectRequest) -> Result<Attachment> {
        let (mut made, _) = self.connect_many_on(std::slice::from_ref(req), &mut *self.host())?;
        Ok(made.remove(0))
    }

    /// `connect`, and what a CNI result needs besides: the network's
    /// record after the change (the store is not read again) and the
    /// MACs, read back over the sockets that made the links.
    pub fn connect_reporting(&self, req: &ConnectRequest) -> Result<Connected> {
        let mut host = self.host();
        let (mut atts, mut state) = self.connect_many_on(std::slice::from_ref(req), &mut *host)?;
        let network = state
            .networks
            .remove(&req.network)
            .expect("connected to it");
        let attachment = atts.remove(0);
        let macs = link_macs(&attachment, &mut *host);
        Ok(Connected {
            attachment,
            network,
            macs,
        })
    }

    /// Attaches several namespaces under one lock, with one state write and
    /// all or nothing: if any attachment fails, none is left.
    pub fn connect_many(&self, reqs: &[ConnectRequest]) -> Result<Vec<Attachment>> {
        Ok(self.connect_many_on(reqs, &mut *self.host())?.0)
    }

    /// The attachments made, and the state after them.
    fn connect_many_on(
        &self,
        reqs: &[ConnectRequest],
        host: &mut dyn Host,
    ) -> Result<(Vec<Attachment>, State)> {
        self.require_root("connect namespaces")?;
        let (lock, before) = self.begin()?;
        let start = std::time::Instant::now();
        let mut state = before.clone();
        let mut ops = Vec::new();
        // One probe of each LAN for all the connects: one wait.
        let probed = facts::lan_probes(host, &before, reqs)?;
        for req in reqs {
            let net = state.networks.get(&req.network);
            let facts = facts::namespace_facts(host, net, req, probed.get(&req.network))?;
            crate::host::phase("gather facts", start);
            ops.extend(plan_connect_into(&mut state, req, &facts)?);
        }
        let mut ops = plan::batch_namespaces(ops);
        // One firewall transaction for all of them, after the links exist.
        ops.extend(Op::firewall(&before, &state));
        heal_firewall(&mut ops, &before, host)?;
        crate::host::phase("gather facts and plan", start);
        self.commit(&lock, &before, &state, &ops, Mode::AllOrNothing, host)?;
        let made = reqs
            .iter()
            .map(|req| {
                state.networks[&req.network]
                    .attachment(&req.namespace)
                    .expect("just added")
                    .clone()
            })
            .collect();
        Ok((made, state))
    }

    pub fn disconnect(&self, network: &str, namespace: &NsRef) -> Result<Attachment> {
        Ok(self
            .disconnect_many(network, std::slice::from_ref(namespace))?
            .remove(0))
    }

    /// Detaches several namespaces from one network, keeping going past
    /// pieces that are already gone.
    pub fn disconnect_many(&self, network: &str, namespaces: &[NsRef]) -> Result<Vec<Attachment>> {
        self.require_root("disconnect namespaces")?;
        let (lock, state) = self.begin()?;
        let (new_state, mut ops) = plan_disconnect(&state, network, namespaces)?;
        let mut host = self.host();
        heal_firewall(&mut ops, &state, &mut *host)?;
        let removed = namespaces
            .iter()
            .map(|ns| {
                state.networks[network]
                    .attachment(ns)
                    .expect("planned")
                    .clone()
            })
            .collect();
        self.commit(&lock, &state, &new_state, &ops, Mode::KeepGoing, &mut *host)?;
        Ok(removed)
    }
}

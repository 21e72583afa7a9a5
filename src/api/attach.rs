//! `connect` and `disconnect`.

use super::{facts, require_root, Mode, Nsnet, Result};
use crate::apply::LiveKernel;
use crate::check::{LiveProbe, Probe};
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

impl Nsnet {
    pub fn connect(&self, req: &ConnectRequest) -> Result<Attachment> {
        Ok(self.connect_with(req, &mut LiveKernel::new())?.0)
    }

    /// `connect` through `kernel`, whose handles the caller may use
    /// afterwards (a CNI ADD reads the MACs back); also returns the
    /// network's record after the change, so that the caller need not read
    /// the store again.
    pub fn connect_with(
        &self,
        req: &ConnectRequest,
        kernel: &mut LiveKernel,
    ) -> Result<(Attachment, Network)> {
        let (mut atts, mut state) = self.connect_many_with(std::slice::from_ref(req), kernel)?;
        let net = state
            .networks
            .remove(&req.network)
            .expect("connected to it");
        Ok((atts.remove(0), net))
    }

    /// Attaches several namespaces under one lock, with one state write and
    /// all or nothing: if any attachment fails, none is left.
    pub fn connect_many(&self, reqs: &[ConnectRequest]) -> Result<Vec<Attachment>> {
        Ok(self.connect_many_with(reqs, &mut LiveKernel::new())?.0)
    }

    /// The attachments made, and the state after them.
    fn connect_many_with(
        &self,
        reqs: &[ConnectRequest],
        kernel: &mut LiveKernel,
    ) -> Result<(Vec<Attachment>, State)> {
        require_root("connect namespaces")?;
        let (lock, before) = self.begin()?;
        let start = std::time::Instant::now();
        let mut state = before.clone();
        let mut ops = Vec::new();
        for req in reqs {
            let mut probe = LiveProbe {
                kernel: &mut *kernel,
            };
            let facts = facts::namespace_facts(&mut probe, state.networks.get(&req.network), req)?;
            crate::apply::phase("gather facts", start);
            ops.extend(plan_connect_into(&mut state, req, &facts)?);
        }
        let mut ops = plan::batch_namespaces(ops);
        // One firewall transaction for all of them, after the links exist.
        ops.extend(Op::firewall(&before, &state));
        heal_firewall(
            &mut ops,
            &before,
            &mut LiveProbe {
                kernel: &mut *kernel,
            },
        )?;
        crate::apply::phase("gather facts and plan", start);
        self.commit(&lock, &before, &state, &ops, Mode::AllOrNothing, kernel)?;
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
        require_root("disconnect namespaces")?;
        let (lock, state) = self.begin()?;
        let (new_state, mut ops) = plan_disconnect(&state, network, namespaces)?;
        let mut kernel = LiveKernel::new();
        heal_firewall(
            &mut ops,
            &state,
            &mut LiveProbe {
                kernel: &mut kernel,
            },
        )?;
        let removed = namespaces
            .iter()
            .map(|ns| {
                state.networks[network]
                    .attachment(ns)
                    .expect("planned")
                    .clone()
            })
            .collect();
        self.commit(
            &lock,
            &state,
            &new_state,
            &ops,
            Mode::KeepGoing,
            &mut kernel,
        )?;
        Ok(removed)
    }
}

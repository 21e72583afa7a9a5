//! `network create` and `network rm`.

use super::{facts, require_root, Mode, Nsnet, Result};
use crate::apply::LiveKernel;
use crate::check::LiveProbe;
use crate::model::{CreateRequest, Network};
use crate::plan::network::{plan_create, plan_remove};

impl Nsnet {
    pub fn create_network(&self, req: &CreateRequest) -> Result<Network> {
        if let Some(asked) = &req.overlay {
            return self.create_overlay(req, asked);
        }
        require_root("create networks")?;
        let (lock, state) = self.begin()?;
        self.make_network(&lock, &state, req, &mut LiveKernel::new())
    }

    /// Gathers the host's facts, plans the network of `req` and commits
    /// it: the local part of every driver's create.
    pub(super) fn make_network(
        &self,
        lock: &crate::store::Lock,
        state: &crate::model::State,
        req: &CreateRequest,
        kernel: &mut LiveKernel,
    ) -> Result<Network> {
        let facts = facts::host_facts(&mut LiveProbe { kernel }, req)?;
        let (new_state, ops) = plan_create(state, req, &facts)?;
        self.commit(lock, state, &new_state, &ops, Mode::AllOrNothing, kernel)?;
        Ok(new_state.networks[&req.name].clone())
    }

    pub fn remove_network(&self, name: &str, force: bool) -> Result<Network> {
        require_root("remove networks")?;
        let (lock, state) = self.begin()?;
        let (new_state, ops) = plan_remove(&state, name, force)?;
        let net = state.networks[name].clone();
        self.commit(
            &lock,
            &state,
            &new_state,
            &ops,
            Mode::KeepGoing,
            &mut LiveKernel::new(),
        )?;
        self.leave_overlay(&net);
        Ok(net)
    }
}

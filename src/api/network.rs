//! `network create` and `network rm`.

use super::{facts, Mode, Nsnet, Result};
use crate::host::Host;
use crate::model::{CreateRequest, Network, Rejection};
use crate::plan::network::{plan_create, plan_remove};
use crate::plan::{without_firewall, Op};

impl Nsnet {
    pub fn create_network(&self, req: &CreateRequest) -> Result<Network> {
        if let Some(asked) = &req.overlay {
            return self.create_overlay(req, asked);
        }
        self.require_root("create networks")?;
        let (lock, state) = self.begin()?;
        self.make_network(&lock, &state, req, &mut *self.host())
    }

    /// Why `--driver ipvlan` is refused: the kernel's support, asked.
    pub fn ipvlan_refusal(&self) -> Rejection {
        // Without an answer, the refusal that holds on any kernel.
        let supported = self.host().kind_supported("ipvlan").unwrap_or(true);
        Rejection::Ipvlan { supported }
    }

    /// Gathers the host's facts, plans the network of `req` and commits
    /// it: the local part of every driver's create.
    pub(super) fn make_network(
        &self,
        lock: &crate::store::Lock,
        state: &crate::model::State,
        req: &CreateRequest,
        host: &mut dyn Host,
    ) -> Result<Network> {
        let facts = facts::host_facts(host, req)?;
        let (new_state, ops) = plan_create(state, req, &facts)?;
        self.commit(lock, state, &new_state, &ops, Mode::AllOrNothing, host)?;
        Ok(new_state.networks[&req.name].clone())
    }

    pub fn remove_network(&self, name: &str, force: bool) -> Result<Network> {
        Ok(self.remove_networks(&[name.to_string()], force)?.remove(0))
    }

    /// Removes networks under one lock, all or none: every removal is
    /// planned before the first step, and one that is refused (a network in
    /// use, without `force`) leaves every network as it was.
    /// A network Docker made is removed by Docker (`docker network rm`),
    /// or here with `force`.
    pub fn remove_networks(&self, names: &[String], force: bool) -> Result<Vec<Network>> {
        self.remove_networks_owned(names, force, false)
    }

    /// `remove_networks`; `by_docker` when Docker asks (DeleteNetwork).
    pub(super) fn remove_networks_owned(
        &self,
        names: &[String],
        force: bool,
        by_docker: bool,
    ) -> Result<Vec<Network>> {
        self.require_root("remove networks")?;
        let (lock, before) = self.begin()?;
        let mut after = before.clone();
        let mut ops = Vec::new();
        for name in names {
            if let Some(docker) = before.networks.get(name).and_then(|n| n.docker.as_ref()) {
                if !force && !by_docker {
                    return Err(Rejection::OwnedByDocker {
                        network: name.clone(),
                        id: docker.id.clone(),
                    }
                    .into());
                }
            }
            let (next, more) = plan_remove(&after, name, force || by_docker)?;
            after = next;
            ops.extend(without_firewall(more));
        }
        let removed: Vec<Network> = names.iter().map(|n| before.networks[n].clone()).collect();
        if let Some(fw) = Op::firewall(&before, &after) {
            ops.insert(0, fw);
        }
        self.commit(
            &lock,
            &before,
            &after,
            &ops,
            Mode::KeepGoing,
            &mut *self.host(),
        )?;
        for net in &removed {
            self.leave_overlay(net);
        }
        Ok(removed)
    }
}

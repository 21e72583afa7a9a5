//! Lab commands: links between namespaces, forwarding, routes and
//! impairment. Each takes the lock, gathers what the kernel says about the
//! namespaces involved, plans (`plan::lab`) and commits like every other
//! command: all or nothing when making, keep going when removing.

use super::{Mode, Nsnet, Result};
use crate::host::Probe;
use crate::model::lab::{Endpoint, Impairment, Route};
use crate::model::{NsRef, Rejection, State};
use crate::plan::lab::{self, Facts, LabNsFacts, LinkRequest};
use crate::plan::{Op, Target};

/// What the kernel says about the named namespaces.
pub(crate) fn lab_facts<'a>(
    probe: &mut dyn Probe,
    namespaces: impl IntoIterator<Item = &'a str>,
) -> Result<Facts> {
    let mut facts = Facts::new();
    for ns in namespaces {
        if facts.contains_key(ns) {
            continue;
        }
        let r = NsRef::parse(ns)?;
        let exists = probe.namespace_exists(&r)?;
        let ifnames = if exists {
            probe
                .links(&Target::Ns(r))?
                .into_iter()
                .map(|l| l.name)
                .collect()
        } else {
            Vec::new()
        };
        facts.insert(ns.to_string(), LabNsFacts { exists, ifnames });
    }
    Ok(facts)
}

impl Nsnet {
    /// One lab change under the lock: facts about `namespaces`, the plan,
    /// the commit.
    fn lab_change(
        &self,
        what: &'static str,
        namespaces: &[&str],
        mode: Mode,
        plan: impl FnOnce(&mut State, &Facts) -> std::result::Result<Vec<Op>, Rejection>,
    ) -> Result<State> {
        self.require_root(what)?;
        let (lock, before) = self.begin()?;
        let mut host = self.host();
        let facts = lab_facts(&mut *host, namespaces.iter().copied())?;
        let mut after = before.clone();
        let ops = plan(&mut after, &facts)?;
        self.commit(&lock, &before, &after, &ops, mode, &mut *host)?;
        Ok(after)
    }

    pub fn link_add(&self, req: &LinkRequest) -> Result<()> {
        let names = [req.ends[0].namespace(), req.ends[1].namespace()];
        self.lab_change("add links", &names, Mode::AllOrNothing, |s, f| {
            lab::plan_link_add(s, req, f)
        })?;
        Ok(())
    }

    pub fn link_del(&self, a: &Endpoint, b: &Endpoint) -> Result<()> {
        self.lab_change("delete links", &[], Mode::KeepGoing, |s, _| {
            lab::plan_link_del(s, a, b)
        })?;
        Ok(())
    }

    pub fn route_add(&self, ns: &str, route: &Route) -> Result<()> {
        self.lab_change("add routes", &[ns], Mode::AllOrNothing, |s, f| {
            lab::plan_route_add(s, ns, route, None, f)
        })?;
        Ok(())
    }

    pub fn route_del(&self, ns: &str, route: &Route) -> Result<()> {
        self.lab_change("delete routes", &[], Mode::KeepGoing, |s, _| {
            lab::plan_route_del(s, ns, route)
        })?;
        Ok(())
    }

    /// Makes `ns` a router (creating the namespace if it is missing).
    pub fn forward(&self, ns: &str, on: bool) -> Result<()> {
        let mode = if on {
            Mode::AllOrNothing
        } else {
            Mode::KeepGoing
        };
        self.lab_change("turn on forwarding", &[ns], mode, |s, f| {
            lab::plan_forward(s, ns, on, None, f)
        })?;
        Ok(())
    }

    /// Impairs what `end` sends, or clears its impairment (`None`).
    pub fn impair(&self, end: &Endpoint, impairment: Option<&Impairment>) -> Result<()> {
        let mode = if impairment.is_some() {
            Mode::AllOrNothing
        } else {
            Mode::KeepGoing
        };
        self.lab_change("impair links", &[&end.namespace], mode, |s, f| {
            lab::plan_impair(s, end, impairment, None, f)
        })?;
        Ok(())
    }

    /// `nsnet ns del`: deletes a named namespace that nothing of nsnet
    /// uses (no attachment, link or route; a router with nothing else is
    /// forgotten first).
    pub fn delete_namespace(&self, name: &str) -> Result<()> {
        self.require_root("delete namespaces")?;
        crate::model::nsref::validate_name(name)?;
        let state = self.state()?;
        let ns = NsRef::Named(name.to_string());
        if let Some((net, _)) = state.attachments_of(&ns).next() {
            return Err(Rejection::NamespaceInUse {
                namespace: name.to_string(),
                network: net.name.clone(),
            }
            .into());
        }
        let lab_user = state
            .links
            .iter()
            .find(|l| l.uses_namespace(name))
            .map(|l| format!("link {} <-> {}", l.ends[0], l.ends[1]))
            .or_else(|| {
                let route = state.lab_namespaces.get(name)?.routes.first()?;
                Some(format!("its route {route}"))
            });
        if let Some(by) = lab_user {
            return Err(Rejection::NamespaceInLab {
                namespace: name.to_string(),
                by,
            }
            .into());
        }
        // Forwarding off forgets a router (and deletes the namespace if
        // nsnet made it).
        let router = state.lab_namespaces.contains_key(name);
        if router {
            self.forward(name, false)?;
        }
        let mut host = self.host();
        if !router || host.namespace_exists(&ns)? {
            host.apply(&Op::DeleteNetns {
                name: name.to_string(),
            })?;
        }
        Ok(())
    }

    /// `nsnet ns add`: creates a named namespace, which nsnet does not
    /// record (iproute2's, as `ip netns add` makes it).
    pub fn add_namespace(&self, name: &str) -> Result<()> {
        self.require_root("add namespaces")?;
        crate::model::nsref::validate_name(name)?;
        self.host().apply(&Op::CreateNetns {
            name: name.to_string(),
        })?;
        Ok(())
    }
}

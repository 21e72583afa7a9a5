//! What the Docker network driver (`crate::docker`) asks of nsnet, one
//! method per driver call that changes something. Each is one lock and one
//! journaled commit, so that a plugin killed at any point leaves nothing
//! half-made; calls Docker may repeat (after a restart of either side)
//! are idempotent.

use std::path::PathBuf;

use ipnet::IpNet;

use super::{facts, heal_firewall, Error, Mode, Nsnet, Result};
use crate::firewall::docker_user;
use crate::host::Host;
use crate::model::ports::PortMapping;
use crate::model::{Attachment, ConnectRequest, CreateRequest, Network, NsRef, State};
use crate::plan::docker as plan;
use crate::plan::{Op, Target};

impl Nsnet {
    /// The network Docker knows by `id`, as recorded.
    pub fn docker_network(&self, id: &str) -> Result<Network> {
        Ok(plan::find_docker_network(&self.state()?, id)?.clone())
    }

    /// CreateNetwork: the network of `req` (whose `docker` is the ID).
    /// Asked again for an ID nsnet has, it answers with that network.
    pub fn docker_create_network(&self, req: &CreateRequest) -> Result<Network> {
        let id = req.docker.as_deref().expect("a Docker request");
        if let Ok(net) = self.docker_network(id) {
            return Ok(net);
        }
        self.create_network(&plan::with_pool_ranges(&self.state()?, req)?)
    }

    /// DeleteNetwork. A network nsnet does not have (removed already) is
    /// no error: Docker retries a call it saw fail.
    pub fn docker_delete_network(&self, id: &str) -> Result<()> {
        let Ok(net) = self.docker_network(id) else {
            return Ok(());
        };
        self.remove_networks_owned(&[net.name], false, true)?;
        Ok(())
    }

    /// CreateEndpoint: the endpoint holds the addresses Docker's IPAM gave.
    pub fn docker_create_endpoint(
        &self,
        id: &str,
        endpoint: &str,
        addresses: &[IpNet],
        mac: Option<String>,
    ) -> Result<()> {
        self.require_root("create Docker endpoints")?;
        let (lock, before) = self.begin()?;
        let after = plan::plan_create_endpoint(&before, id, endpoint, addresses, mac)?;
        if after == before {
            return Ok(());
        }
        self.commit(
            &lock,
            &before,
            &after,
            &[],
            Mode::AllOrNothing,
            &mut *self.host(),
        )
    }

    /// DeleteEndpoint (leaving first if Docker did not).
    pub fn docker_delete_endpoint(&self, id: &str, endpoint: &str) -> Result<()> {
        self.docker_change(Mode::KeepGoing, |state, _| {
            plan::plan_delete_endpoint(state, id, endpoint).map_err(Error::from)
        })
        .map(drop)
    }

    /// Join: a veth whose container end is handed to Docker, which moves it
    /// into the namespace it will have at `sandbox`. The attachment, and
    /// its network's record after the change (for the reply's gateways).
    pub fn docker_join(
        &self,
        id: &str,
        endpoint: &str,
        sandbox: PathBuf,
    ) -> Result<(Attachment, Network)> {
        let state = self.docker_change(Mode::AllOrNothing, |state, host| {
            let net = plan::find_docker_network(state, id)?;
            let facts = join_facts(host, net, endpoint, &NsRef::Path(sandbox.clone()))?;
            plan::plan_join(state, id, endpoint, sandbox.clone(), &facts).map_err(Error::from)
        })?;
        let net = plan::find_docker_network(&state, id)?;
        let att = (**net.attachments.of_docker(endpoint).expect("joined")).clone();
        Ok((att, net.clone()))
    }

    /// Leave. Idempotent.
    pub fn docker_leave(&self, id: &str, endpoint: &str) -> Result<()> {
        self.docker_change(Mode::KeepGoing, |state, _| {
            plan::plan_leave(state, id, endpoint).map_err(Error::from)
        })
        .map(drop)
    }

    /// ProgramExternalConnectivity: publishes `ports` to the endpoint;
    /// returns them with the host ports nsnet picked.
    pub fn docker_publish(
        &self,
        id: &str,
        endpoint: &str,
        ports: &[PortMapping],
    ) -> Result<Vec<PortMapping>> {
        let state = self.docker_change(Mode::AllOrNothing, |state, host| {
            let mut ask = ConnectRequest::new("", NsRef::Named(String::new()));
            ask.publish = ports.to_vec();
            let listeners = facts::host_listeners(host, &ask)?;
            plan::plan_publish(state, id, endpoint, ports, &listeners).map_err(Error::from)
        })?;
        let net = plan::find_docker_network(&state, id)?;
        Ok(net
            .attachments
            .of_docker(endpoint)
            .map(|a| a.ports.clone())
            .unwrap_or_default())
    }

    /// RevokeExternalConnectivity. Idempotent.
    pub fn docker_unpublish(&self, id: &str, endpoint: &str) -> Result<()> {
        self.docker_change(Mode::KeepGoing, |state, _| {
            plan::plan_unpublish(state, id, endpoint).map_err(Error::from)
        })
        .map(drop)
    }

    /// Keeps nsnet's chain in Docker's DOCKER-USER in step with the record
    /// (see `firewall::docker_user`), in iptables and ip6tables where
    /// dockerd made that chain: the steps it took, for the log.
    pub fn sync_docker_forward(&self) -> Result<Vec<String>> {
        self.require_root("place rules in Docker's DOCKER-USER chain")?;
        let state = self.state()?;
        let bridges = state.bridges();
        let mut host = self.host();
        let mut taken = Vec::new();
        for v6 in [false, true] {
            let placed = host.docker_forward(v6).map_err(Error::Probe)?;
            if placed.is_none_or(|p| p.serves(&bridges)) {
                continue;
            }
            let op = Op::DockerForward {
                v6,
                rules: docker_user::rules(&bridges),
            };
            host.apply(&op).map_err(|source| {
                Error::Step(crate::apply::StepError {
                    op: Box::new(op.clone()),
                    source,
                })
            })?;
            taken.push(op.to_string());
        }
        Ok(taken)
    }

    /// RequestPool of Docker's IPAM: `asked`, or a free private subnet,
    /// handing out its own addresses from `range`.
    pub fn docker_request_pool(
        &self,
        asked: Option<IpNet>,
        range: Option<IpNet>,
        v6: bool,
    ) -> Result<IpNet> {
        let mut got = None;
        self.docker_change(Mode::AllOrNothing, |state, _| {
            let (after, cidr) = plan::plan_request_pool(state, asked, range, v6)?;
            got = Some(cidr);
            Ok((after, Vec::new()))
        })?;
        Ok(got.expect("planned"))
    }

    /// A pool Docker kept and nsnet's record lost (its record is on a
    /// tmpfs, Docker's networks outlive a reboot): recorded again from its
    /// ID, as it was asked, whatever network now has its subnet.
    pub fn docker_restore_pool(&self, id: &str) -> Result<()> {
        self.docker_change(Mode::AllOrNothing, |state, _| {
            Ok((plan::plan_restore_pool(state, id)?, Vec::new()))
        })
        .map(drop)
    }

    /// ReleasePool. Idempotent.
    pub fn docker_release_pool(&self, id: &str) -> Result<()> {
        self.docker_change(Mode::KeepGoing, |state, _| {
            Ok((plan::plan_release_pool(state, id), Vec::new()))
        })
        .map(drop)
    }

    /// RequestAddress: `asked` or a free address of pool `id` (with its
    /// prefix); the gateway's when `gateway`.
    pub fn docker_request_address(
        &self,
        id: &str,
        asked: Option<std::net::IpAddr>,
        gateway: bool,
    ) -> Result<IpNet> {
        let mut got = None;
        self.docker_change(Mode::AllOrNothing, |state, host| {
            let mut lan = crate::plan::driver::lan::LanProbe::default();
            if let Some((parent, ms, candidates)) = plan::lan_candidates(state, id, asked) {
                let wait = std::time::Duration::from_millis(u64::from(ms));
                lan.holders = host
                    .lan_probe(&parent, &candidates, wait)
                    .map_err(Error::Probe)?;
                lan.probed = Some(candidates);
            }
            let (after, addr) = plan::plan_request_address(state, id, asked, gateway, &lan)?;
            got = Some(addr);
            Ok((after, Vec::new()))
        })?;
        Ok(got.expect("planned"))
    }

    /// ReleaseAddress. Idempotent.
    pub fn docker_release_address(&self, id: &str, addr: std::net::IpAddr) -> Result<()> {
        self.docker_change(Mode::KeepGoing, |state, _| {
            Ok((plan::plan_release_address(state, id, addr), Vec::new()))
        })
        .map(drop)
    }

    /// One change under the lock: plan it on the record and the host's
    /// facts, commit it; the state after.
    fn docker_change(
        &self,
        mode: Mode,
        plan: impl FnOnce(&State, &mut dyn Host) -> Result<(State, Vec<Op>)>,
    ) -> Result<State> {
        self.require_root("change Docker networks")?;
        let (lock, before) = self.begin()?;
        let mut host = self.host();
        let (after, mut ops) = plan(&before, &mut *host)?;
        if after == before && ops.is_empty() {
            return Ok(after);
        }
        heal_firewall(&mut ops, &before, &mut *host)?;
        self.commit(&lock, &before, &after, &ops, mode, &mut *host)?;
        Ok(after)
    }
}

/// The names a join would take that the host has already, and whether
/// br_netfilter is on.
fn join_facts(
    host: &mut dyn Host,
    net: &Network,
    endpoint: &str,
    sandbox: &NsRef,
) -> Result<plan::JoinFacts> {
    let (host_end, handed) = plan::join_names(net, endpoint, sandbox)?;
    let mut taken = Vec::new();
    for name in [host_end, handed] {
        if host.link(&Target::Host, &name)?.is_some() {
            taken.push(name);
        }
    }
    Ok(plan::JoinFacts {
        taken,
        bridge_netfilter: facts::bridge_netfilter(host, net),
    })
}

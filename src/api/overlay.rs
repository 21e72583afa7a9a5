//! Overlay networks: joining one (definition and host subnet claimed in
//! etcd, then the local bridge and VXLAN device made as for any network),
//! leaving it, and programming its peers (the agent's work).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use ipnet::{IpNet, Ipv4Net};

use super::{Error, Nsnet, Result};
use crate::cluster::{ClaimRequest, Registry};
use crate::host::{Host, Machine, Probe};
use crate::model::overlay::{self, EtcdAccess, Overlay, OverlayRequest, Peer, Reservation};
use crate::model::{names, CreateRequest, Network, Rejection};
use crate::plan::driver::check_overlay;
use crate::plan::{Op, Target};

/// The host and port of an etcd endpoint URL.
fn endpoint_address(endpoint: &str) -> Result<SocketAddr> {
    let bad = || Error::BadEndpoint {
        endpoint: endpoint.to_string(),
    };
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let hostport = rest.trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// This host's underlay: the address asked for, or the one it reaches the
/// first etcd endpoint from; the interface holding it and that
/// interface's MTU.
fn underlay(probe: &mut dyn Probe, asked: &OverlayRequest) -> Result<(IpAddr, String, u32)> {
    let first = asked.etcd.first().ok_or_else(|| Error::BadEndpoint {
        endpoint: String::new(),
    })?;
    let addr = match asked.underlay {
        Some(a) => a,
        None => probe
            .source_towards(endpoint_address(first)?)
            .map_err(|e| {
                Error::Cluster(crate::cluster::Error::Unreachable {
                    endpoints: first.clone(),
                    reason: format!("no route: {e}"),
                })
            })?,
    };
    if !addr.is_ipv4() {
        return Err(Rejection::OverlayNeedsIpv4 {
            what: "underlay address",
            value: addr.to_string(),
        }
        .into());
    }
    let index = probe
        .addresses(&Target::Host)?
        .into_iter()
        .find(|a| a.addr.addr() == addr)
        .map(|a| a.index)
        .ok_or(Error::NoUnderlay { addr })?;
    let link = probe
        .links(&Target::Host)?
        .into_iter()
        .find(|l| l.index == index)
        .ok_or(Error::NoUnderlay { addr })?;
    Ok((addr, link.name, link.mtu))
}

/// A lease for a claim and a longer one for its hold.
fn grant_both(registry: &Registry, o: &Overlay) -> crate::cluster::Result<(i64, i64)> {
    let lease = registry.client().grant(o.lease_ttl)?;
    let hold = registry.client().grant(o.hold_ttl());
    if hold.is_err() {
        let _ = registry.client().revoke(lease);
    }
    Ok((lease, hold?))
}

/// A seed for choosing a host subnet: hosts that join at once start their
/// search at different places.
fn seed_of(vtep: &IpAddr) -> u64 {
    u64::from(names::stable_hash(&[&vtep.to_string(), "subnet"]))
}

impl Nsnet {
    /// Defines or joins an overlay network: validated locally first, then
    /// the definition and this host's subnet claimed in etcd, then the local
    /// bridge and VXLAN device; a failure after the claim gives it back.
    pub(super) fn create_overlay(
        &self,
        req: &CreateRequest,
        asked: &OverlayRequest,
    ) -> Result<Network> {
        self.require_root("create networks")?;
        let (lock, state) = self.begin()?;
        names::validate_network_name(&req.name)?;
        if state.networks.contains_key(&req.name) {
            return Err(Rejection::NetworkExists {
                network: req.name.clone(),
            }
            .into());
        }
        check_overlay(&state, &req.name, &asked.config)?;
        let mut host = self.host();
        let (vtep, underlay_if, underlay_mtu) = underlay(&mut *host, asked)?;
        let joined = Overlay {
            config: asked.config.clone(),
            etcd: asked.etcd.clone(),
            access: asked.access.clone(),
            vtep,
            underlay: underlay_if,
            vxlan: overlay::vxlan_name(asked.config.vni),
            vtep_mac: names::format_mac(&names::derived_mac(&[&req.name, &vtep.to_string()])),
            lease_ttl: asked.lease_ttl,
            conflict: None,
        };
        let registry = Registry::connect(&asked.etcd, &asked.access)?;
        let (defined, defined_at) = registry.define_or_join(&req.name, &asked.config)?;
        let claimed = grant_both(&registry, &joined).and_then(|(lease, hold_lease)| {
            registry
                .claim(&ClaimRequest {
                    network: &req.name,
                    config: &asked.config,
                    defined_at,
                    reservation: &joined.reservation(),
                    lease,
                    hold_lease,
                    wanted: None,
                    seed: seed_of(&vtep),
                })
                .map(|subnet| (subnet, lease, hold_lease))
        });
        let (subnet, lease, hold_lease) = match claimed {
            Ok(c) => c,
            Err(e) => {
                if defined {
                    let _ = registry.leave(&req.name, &asked.config, &asked.config.subnet);
                }
                return Err(e.into());
            }
        };
        let local = CreateRequest {
            subnets: vec![IpNet::V4(subnet)],
            gateways: vec![IpAddr::V4(overlay::host_gateway(&subnet))],
            mtu: Some(
                req.mtu
                    .unwrap_or(u32::MAX)
                    .min(underlay_mtu - overlay::VXLAN_OVERHEAD_V4),
            ),
            joined: Some(joined),
            ..req.clone()
        };
        let made = self.make_network(&lock, &state, &local, &mut *host);
        if made.is_err() {
            let _ = registry.leave(&req.name, &asked.config, &subnet);
            let _ = registry.client().revoke(lease);
            let _ = registry.client().revoke(hold_lease);
        } else {
            self.notice(format!(
                "joined overlay network {} with host subnet {subnet}; run `nsnet agent` on this host to keep the claim (it lapses {}s after the last renewal)",
                req.name, asked.lease_ttl
            ));
        }
        made
    }

    /// Gives this host's subnet of an overlay network back to etcd, after
    /// the local part is gone. When etcd is out of reach the claim lapses
    /// with its lease, which nobody renews any more: a notice says so.
    pub(super) fn leave_overlay(&self, net: &Network) {
        let (Some(o), Some(s)) = (&net.overlay, net.subnet_v4()) else {
            return;
        };
        let IpNet::V4(subnet) = s.cidr else {
            return;
        };
        let left = Registry::connect(&o.etcd, &o.access)
            .and_then(|r| r.leave(&net.name, &o.config, &subnet));
        if let Err(e) = left {
            self.notice(format!(
                "left overlay network {} here, but could not release host subnet {subnet} in etcd ({}); it lapses within {}s",
                net.name,
                crate::error_chain(&e),
                o.lease_ttl
            ));
        }
    }
}

/// Programs the kernel so that exactly `wanted` peers are reachable over
/// an overlay network's VXLAN device: missing ones added, changed ones
/// replaced, others removed (one netlink exchange each way). This host's
/// own claim is never a peer. Returns how many entries changed.
pub fn reconcile_peers(machine: &dyn Machine, net: &Network, wanted: &[Peer]) -> Result<usize> {
    let Some(o) = &net.overlay else {
        return Ok(0);
    };
    let mut host = machine.open();
    let foreign = foreign(net, o);
    let wanted: Vec<Peer> = wanted.iter().filter(|p| foreign(p)).cloned().collect();
    let present = host.peers(&o.vxlan)?;
    let add: Vec<Peer> = wanted
        .iter()
        .filter(|p| !present.contains(p))
        .cloned()
        .collect();
    let remove: Vec<Peer> = present
        .iter()
        // A peer that changed is replaced in place by its new entries.
        .filter(|p| {
            !wanted.contains(p) && !add.iter().any(|a| a.subnet == p.subnet && a.mac == p.mac)
        })
        .cloned()
        .collect();
    let changed = add.len() + remove.len();
    program(&mut *host, o, add, remove)?;
    // The guard lets exactly the wanted peers' VTEPs through (when the
    // agent has made it).
    if let Some((through, _)) = host.vxlan_guard(o.config.vni)? {
        let vteps: Vec<Ipv4Addr> = wanted.iter().filter_map(|p| v4(&p.vtep)).collect();
        host.apply(&Op::GuardPeers {
            vni: o.config.vni,
            add: vteps
                .iter()
                .filter(|a| !through.contains(a))
                .copied()
                .collect(),
            remove: through
                .iter()
                .filter(|a| !vteps.contains(a))
                .copied()
                .collect(),
        })?;
    }
    Ok(changed)
}

/// Whether a claim is another host's, on another subnet than this host's
/// bridge: a host that took this host's subnet (a conflict) is never
/// routed to, or the local subnet would go over VXLAN.
fn foreign<'a>(net: &'a Network, o: &'a Overlay) -> impl Fn(&Peer) -> bool + 'a {
    let own = net.subnet_v4().map(|s| s.cidr);
    move |p: &Peer| p.vtep != o.vtep && own != Some(IpNet::V4(p.subnet))
}

fn v4(addr: &IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    }
}

/// Adds or removes single peers as etcd reports them (no dump first).
pub fn change_peers(
    machine: &dyn Machine,
    net: &Network,
    add: &[Peer],
    remove: &[Peer],
) -> Result<()> {
    let Some(o) = &net.overlay else {
        return Ok(());
    };
    let foreign = foreign(net, o);
    let remove: Vec<Peer> = remove.iter().filter(|p| foreign(p)).cloned().collect();
    let add: Vec<Peer> = add.iter().filter(|p| foreign(p)).cloned().collect();
    let mut host = machine.open();
    program(&mut *host, o, add.clone(), remove.clone())?;
    if host.vxlan_guard(o.config.vni)?.is_some() {
        let added: Vec<Ipv4Addr> = add.iter().filter_map(|p| v4(&p.vtep)).collect();
        host.apply(&Op::GuardPeers {
            vni: o.config.vni,
            remove: remove
                .iter()
                .filter_map(|p| v4(&p.vtep))
                .filter(|a| !added.contains(a))
                .collect(),
            add: added,
        })?;
    }
    Ok(())
}

/// Removes, then adds, peers on the overlay's VXLAN device.
fn program(host: &mut dyn Host, o: &Overlay, add: Vec<Peer>, remove: Vec<Peer>) -> Result<()> {
    if !remove.is_empty() {
        host.apply(&Op::RemovePeers {
            vxlan: o.vxlan.clone(),
            peers: remove,
        })?;
    }
    if !add.is_empty() {
        host.apply(&Op::AddPeers {
            vxlan: o.vxlan.clone(),
            peers: add,
        })?;
    }
    Ok(())
}

/// Makes this host's VXLAN guard cover exactly `networks` (the overlay
/// networks the agent serves): only their peers' packets reach them.
pub fn guard_networks(machine: &dyn Machine, networks: &[&Network]) -> Result<()> {
    let guards = networks
        .iter()
        .filter_map(|n| n.overlay.as_ref().map(Overlay::guard))
        .collect();
    machine.open().apply(&Op::GuardVxlan { guards })?;
    Ok(())
}

impl Nsnet {
    /// Notes in the record that another host holds this host's subnet of
    /// an overlay network (`Some`), or no longer does (`None`). No kernel
    /// change: the agent stops announcing and programming that subnet.
    pub fn note_subnet_conflict(&self, network: &str, holder: Option<IpAddr>) -> Result<()> {
        let (lock, before) = self.begin()?;
        let mut after = before.clone();
        let Some(o) = after
            .networks
            .get_mut(network)
            .and_then(|n| n.overlay.as_mut())
        else {
            return Ok(());
        };
        if o.conflict.as_ref().map(|c| c.holder) == holder {
            return Ok(());
        }
        o.conflict = holder.map(|holder| overlay::SubnetConflict {
            holder,
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        let mut host = self.host();
        self.commit(
            &lock,
            &before,
            &after,
            &[],
            super::Mode::AllOrNothing,
            &mut *host,
        )
    }

    /// The peers programmed for an overlay network right now.
    pub fn programmed_peers(&self, net: &Network) -> Result<Vec<Peer>> {
        match &net.overlay {
            Some(o) => Ok(self.host().peers(&o.vxlan)?),
            None => Ok(Vec::new()),
        }
    }
}

pub use crate::cluster::{Claim, ClaimChange, Cluster, Error as ClusterError, Reclaim};

/// The cluster store at `endpoints` (etcd), reached as `access` says.
pub fn cluster_at(
    endpoints: &[String],
    access: &EtcdAccess,
) -> std::result::Result<std::sync::Arc<dyn Cluster>, ClusterError> {
    Ok(std::sync::Arc::new(Registry::connect(endpoints, access)?))
}

/// A peer from a claim read in etcd.
pub fn peer_of(subnet: Ipv4Net, r: &Reservation) -> Option<Peer> {
    Some(Peer {
        subnet,
        vtep: r.vtep,
        mac: names::parse_mac(&r.vtep_mac).ok()?,
    })
}

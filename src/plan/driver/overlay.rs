//! The `overlay` driver: a network across hosts. This host's part is a
//! bridge network (the `bridge` driver's) on the host subnet it claimed in
//! etcd, plus a VXLAN device whose peers the agent programs.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Bridge, Device, NetworkDriver};
use crate::model::overlay::{self, OverlayConfig};
use crate::model::{ipam, names, CreateRequest, Network, Rejection, State};
use crate::plan::network::HostFacts;
use crate::plan::{Op, Target};

type Result<T> = std::result::Result<T, Rejection>;

pub struct Overlay;

impl NetworkDriver for Overlay {
    fn validate(&self, state: &State, req: &CreateRequest, _host: &HostFacts) -> Result<()> {
        match &req.joined {
            Some(o) => check_overlay(state, &req.name, &o.config),
            None => Ok(()),
        }
    }

    fn setup(&self, network: &mut Network, host: &HostFacts, mac: [u8; 6]) -> Vec<Op> {
        let mut ops = Bridge.setup(network, host, mac);
        ops.extend(vxlan_steps(network));
        ops
    }

    fn links(&self, network: &Network) -> Vec<String> {
        let mut links = Bridge.links(network);
        links.extend(network.overlay.as_ref().map(|o| o.vxlan.clone()));
        links
    }

    fn release(&self, network: &Network) -> Vec<Op> {
        Bridge.release(network)
    }

    fn connect(
        &self,
        network: &Network,
        att: &crate::model::Attachment,
        facts: &crate::plan::attach::NsFacts,
        mac: Option<[u8; 6]>,
    ) -> Vec<Op> {
        Bridge.connect(network, att, facts, mac)
    }

    fn disconnect(
        &self,
        network: &Network,
        leaving: &[&crate::model::Attachment],
        doomed: &[String],
    ) -> Vec<Op> {
        Bridge.disconnect(network, leaving, doomed)
    }

    fn devices(&self, network: &Network) -> Vec<Device> {
        network
            .overlay
            .iter()
            .map(|o| Device::Tunnel {
                name: o.vxlan.clone(),
            })
            .collect()
    }
}

/// Whether this host can take part in an overlay network: its cluster
/// subnet overlaps no other network here and its VNI is not another's.
/// Checked before anything is written to etcd.
pub fn check_overlay(state: &State, name: &str, config: &OverlayConfig) -> Result<()> {
    let cluster = IpNet::V4(config.subnet);
    for other in state.networks.values().filter(|n| n.name != name) {
        let theirs = other
            .overlay
            .as_ref()
            .map(|o| vec![IpNet::V4(o.config.subnet)])
            .unwrap_or_else(|| other.subnets.iter().map(|s| s.cidr).collect());
        if let Some(t) = theirs.iter().find(|t| ipam::overlap(&cluster, t)) {
            return Err(Rejection::SubnetOverlap {
                subnet: cluster,
                theirs: *t,
                network: other.name.clone(),
            });
        }
        if other.overlay.as_ref().map(|o| o.config.vni) == Some(config.vni) {
            return Err(Rejection::VniTaken {
                vni: config.vni,
                network: other.name.clone(),
            });
        }
    }
    if !config.valid_lengths() {
        return Err(Rejection::HostSubnetLength {
            subnet: config.subnet,
            length: config.host_subnet_len,
        });
    }
    Ok(())
}

/// The VXLAN device of an overlay network: in the network's link group (so
/// `rm` deletes it with the bridge), carrying the host subnet's network
/// address as a /32 (the source of what the host sends to peers).
fn vxlan_steps(network: &Network) -> Vec<Op> {
    let Some(o) = &network.overlay else {
        return Vec::new();
    };
    let (IpAddr::V4(local), Some(subnet)) = (o.vtep, network.subnet_v4()) else {
        return Vec::new();
    };
    let IpNet::V4(host_subnet) = subnet.cidr else {
        return Vec::new();
    };
    vec![
        Op::CreateVxlan {
            name: o.vxlan.clone(),
            vni: o.config.vni,
            port: o.config.port,
            local,
            underlay: o.underlay.clone(),
            mac: names::parse_mac(&o.vtep_mac).unwrap_or_default(),
            mtu: network.mtu.unwrap_or(1450),
            group: network.link_group,
        },
        Op::AddAddress {
            target: Target::Host,
            ifname: o.vxlan.clone(),
            addr: overlay::vxlan_address(&host_subnet),
        },
        Op::LinkUp {
            target: Target::Host,
            ifname: o.vxlan.clone(),
        },
    ]
}

//! The `bridge` driver: one Linux bridge per network, made or adopted (a
//! bridge of that name the host already has), carrying the gateway
//! addresses.

use super::NetworkDriver;
use crate::model::{sysctl, Attachment, CreateRequest, Network, Rejection, State};
use crate::plan::attach::NsFacts;
use crate::plan::network::HostFacts;
use crate::plan::{Op, Target};

pub struct Bridge;

impl NetworkDriver for Bridge {
    fn validate(
        &self,
        _state: &State,
        _req: &CreateRequest,
        _host: &HostFacts,
    ) -> Result<(), Rejection> {
        Ok(())
    }

    fn setup(&self, network: &mut Network, host: &HostFacts, mac: [u8; 6]) -> Vec<Op> {
        bridge_steps(network, host, mac)
    }

    fn links(&self, network: &Network) -> Vec<String> {
        match network.bridge_adopted {
            true => Vec::new(),
            false => vec![network.bridge.clone()],
        }
    }

    fn release(&self, network: &Network) -> Vec<Op> {
        match network.bridge_adopted {
            true => release_adopted_bridge(network),
            false => Vec::new(),
        }
    }

    fn devices(&self, _network: &Network) -> Vec<super::Device> {
        Vec::new()
    }

    fn connect(
        &self,
        network: &Network,
        att: &Attachment,
        facts: &NsFacts,
        mac: Option<[u8; 6]>,
    ) -> Vec<Op> {
        crate::plan::attach::veth_steps(network, att, facts, mac)
    }

    fn disconnect(
        &self,
        _network: &Network,
        leaving: &[&Attachment],
        doomed: &[String],
    ) -> Vec<Op> {
        crate::plan::attach::veth_removal(leaving, doomed)
    }
}

/// The bridge: created, or adopted when the host has one of that name.
fn bridge_steps(network: &mut Network, host: &HostFacts, mac: [u8; 6]) -> Vec<Op> {
    let bridge = network.bridge.clone();
    let mut ops = Vec::new();
    if !network.bridge_adopted {
        ops.push(Op::CreateBridge {
            name: bridge.clone(),
            mac,
            mtu: network.mtu,
            group: Some(network.link_group),
        });
        if network.subnet_v6().is_some() {
            // Without DAD the bridge's link-local address is usable at
            // once. While it is tentative (1-2 s) the kernel cannot send
            // neighbour solicitations for forwarded packets, and the first
            // IPv6 connections into the network are lost.
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key: sysctl::accept_dad(&bridge),
                value: "0".into(),
            });
        }
    }
    let addresses = if network.has_gateway_addresses() {
        network.subnets.clone()
    } else {
        Vec::new()
    };
    for s in addresses {
        let addr = s.gateway_net();
        if host.existing_addresses.contains(&addr) {
            network.preexisting_gateways.push(s.gateway);
            continue;
        }
        ops.push(Op::AddAddress {
            target: Target::Host,
            ifname: bridge.clone(),
            addr,
        });
    }
    if network.bridge_adopted && mac != [0; 6] {
        // Pin the adopted bridge's MAC: otherwise it follows the lowest MAC
        // of its ports and changes as attachments come and go.
        ops.push(Op::SetMac {
            target: Target::Host,
            ifname: bridge.clone(),
            mac,
        });
    }
    if !network.bridge_adopted || network.bridge_brought_up {
        ops.push(Op::LinkUp {
            target: Target::Host,
            ifname: bridge.clone(),
        });
    }
    if network.subnet_v4().is_some() && !network.internal {
        let key = sysctl::route_localnet(&bridge);
        let current = host.sysctl(&key);
        if current.as_deref() != Some("1") {
            if let (true, Some(old)) = (network.bridge_adopted, current) {
                network.bridge_sysctls.insert(key.clone(), old);
            }
            ops.push(Op::SetSysctl {
                target: Target::Host,
                key,
                value: "1".into(),
            });
        }
    }
    ops
}

/// What an adopted bridge gets back on removal: its sysctls, its down
/// state, and no gateway addresses of nsnet's.
fn release_adopted_bridge(net: &Network) -> Vec<Op> {
    let mut ops = Vec::new();
    for (key, old) in &net.bridge_sysctls {
        ops.push(Op::SetSysctl {
            target: Target::Host,
            key: key.clone(),
            value: old.clone(),
        });
    }
    if net.bridge_brought_up {
        ops.push(Op::LinkDown {
            target: Target::Host,
            ifname: net.bridge.clone(),
        });
    }
    for s in net.subnets.iter().filter(|_| net.has_gateway_addresses()) {
        if !net.preexisting_gateways.contains(&s.gateway) {
            ops.push(Op::DeleteAddress {
                target: Target::Host,
                ifname: net.bridge.clone(),
                addr: s.gateway_net(),
            });
        }
    }
    ops
}

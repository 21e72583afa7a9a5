//! The step that reverses each step of a plan.

use super::{LanOp, Op, Target};

/// The step that reverses `op`. `old_sysctl` is the value a sysctl had.
pub fn undo_of(op: &Op, old_sysctl: Option<String>) -> Option<Op> {
    match op {
        Op::CreateNetns { name } => Some(Op::DeleteNetns { name: name.clone() }),
        Op::CreateNamespaces { names } => Some(Op::DeleteNamespaces {
            names: names.clone(),
        }),
        Op::CreateBridge { name, .. } => Some(Op::DeleteLink {
            target: Target::Host,
            name: name.clone(),
        }),
        Op::CreateVxlan { name, .. } => Some(Op::DeleteLink {
            target: Target::Host,
            name: name.clone(),
        }),
        Op::CreateVeth { host, .. } => Some(Op::DeleteLink {
            target: Target::Host,
            name: host.clone(),
        }),
        Op::Lan(op) => lan_undo(op),
        Op::CreateLinkPair { .. }
        | Op::CreateSwitch { .. }
        | Op::AddRoute { .. }
        | Op::SetImpairment { .. } => lab_undo(op),
        Op::AddAddress {
            target,
            ifname,
            addr,
        } => Some(Op::DeleteAddress {
            target: target.clone(),
            ifname: ifname.clone(),
            addr: *addr,
        }),
        Op::SetSysctl { target, key, value } => match old_sysctl {
            Some(old) if &old != value => Some(Op::SetSysctl {
                target: target.clone(),
                key: key.clone(),
                value: old,
            }),
            _ => None,
        },
        Op::Firewall {
            transaction,
            previous,
            table_after,
            table_before,
        } => Some(Op::Firewall {
            transaction: previous.clone(),
            previous: transaction.clone(),
            table_after: table_before.clone(),
            table_before: table_after.clone(),
        }),
        // Only an adopted bridge is brought up on a link nsnet did not
        // create; put it back down if a later step fails.
        Op::LinkUp { target, ifname } if ifname != "lo" && *target == Target::Host => {
            Some(Op::LinkDown {
                target: target.clone(),
                ifname: ifname.clone(),
            })
        }
        // Deleting a link removes its routes and port settings; links come
        // down with them.
        Op::LinkUp { .. }
        | Op::LinkDown { .. }
        | Op::SetMac { .. }
        | Op::SetHairpin { .. }
        | Op::SetPortIsolated { .. }
        | Op::AddPort { .. }
        | Op::AddDefaultRoute { .. } => None,
        Op::AddPeers { vxlan, peers } => Some(Op::RemovePeers {
            vxlan: vxlan.clone(),
            peers: peers.clone(),
        }),
        Op::RemovePeers { vxlan, peers } => Some(Op::AddPeers {
            vxlan: vxlan.clone(),
            peers: peers.clone(),
        }),
        Op::WriteResolvConf { namespace, .. } => Some(Op::RemoveResolvConf {
            namespace: namespace.clone(),
        }),
        // Deletions are not undone: teardown plans keep going instead.
        Op::DeleteNetns { .. }
        | Op::DeleteNamespaces { .. }
        | Op::DeleteLink { .. }
        | Op::DeleteLinkGroup { .. }
        | Op::DeleteLinks { .. }
        | Op::RetireLinks { .. }
        | Op::DeleteRoute { .. }
        | Op::ClearImpairment { .. }
        | Op::ParkLinks { .. }
        | Op::ClearParked { .. }
        | Op::ForgetFlows { .. }
        | Op::RemoveResolvConf { .. }
        | Op::DeleteAddress { .. } => None,
        // It follows the record, which the next sync reads again.
        Op::DockerForward { .. } | Op::GuardVxlan { .. } | Op::GuardPeers { .. } => None,
    }
}

/// The undo of a step of a network on the LAN; moving a device back and
/// deleting a route are not undone (teardown plans keep going instead).
fn lan_undo(op: &LanOp) -> Option<Op> {
    match op {
        LanOp::CreateMacvlan { netns, ifname, .. } => Some(Op::DeleteLink {
            target: netns.clone().map(Target::Ns).unwrap_or(Target::Host),
            name: ifname.clone(),
        }),
        LanOp::AddDeviceRoute {
            destination,
            ifname,
        } => Some(Op::Lan(LanOp::DeleteDeviceRoute {
            destination: *destination,
            ifname: ifname.clone(),
        })),
        LanOp::MoveDeviceIn {
            device,
            netns,
            ifname,
        } => Some(Op::Lan(LanOp::ReturnDevice {
            netns: netns.clone(),
            ifname: ifname.clone(),
            device: device.clone(),
        })),
        _ => None,
    }
}

/// The undo of a lab step.
fn lab_undo(op: &Op) -> Option<Op> {
    match op {
        Op::CreateLinkPair { netns, ifname, .. } => Some(Op::DeleteLink {
            target: Target::Ns(netns.clone()),
            name: ifname.clone(),
        }),
        Op::CreateSwitch { netns, bridge, .. } => Some(Op::DeleteLink {
            target: Target::Ns(netns.clone()),
            name: bridge.clone(),
        }),
        Op::AddRoute {
            target,
            destination,
            via,
        } => Some(Op::DeleteRoute {
            target: target.clone(),
            destination: *destination,
            via: *via,
        }),
        Op::SetImpairment {
            target,
            ifname,
            previous,
            impairment,
        } => Some(match previous {
            Some(p) => Op::SetImpairment {
                target: target.clone(),
                ifname: ifname.clone(),
                impairment: p.clone(),
                previous: Some(impairment.clone()),
            },
            None => Op::ClearImpairment {
                target: target.clone(),
                ifname: ifname.clone(),
            },
        }),
        _ => None,
    }
}

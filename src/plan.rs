//! Plans: the kernel and firewall operations one command needs, in order.
//! Planning is pure; `kernel::Kernel` carries them out. Applying a plan is
//! all or nothing: each completed step yields its own undo, and a failure
//! undoes the completed steps in reverse order. Teardown plans instead keep
//! going past failures and report each one.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::netns::NsRef;

/// Where an interface operation happens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The namespace nsnet itself runs in (where the bridges live).
    Host,
    Ns(NsRef),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Host => f.write_str("host"),
            Target::Ns(ns) => write!(f, "namespace {ns}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    CreateNetns {
        name: String,
    },
    DeleteNetns {
        name: String,
    },
    /// Several namespaces, created in parallel.
    CreateNamespaces {
        names: Vec<String>,
    },
    DeleteNamespaces {
        names: Vec<String>,
    },
    CreateBridge {
        name: String,
        mac: [u8; 6],
        mtu: Option<u32>,
        /// Shared with the network's veths, so that removing the network
        /// deletes bridge and ports in one request.
        group: Option<u32>,
    },
    CreateVeth {
        host: String,
        peer: String,
        netns: NsRef,
        bridge: String,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        group: u32,
    },
    DeleteLink {
        target: Target,
        name: String,
    },
    /// Deletes the listed host links in one request when they are exactly
    /// the members of `group`; otherwise one by one, so that a foreign link
    /// that happens to share the group number is never touched.
    DeleteLinkGroup {
        group: u32,
        names: Vec<String>,
    },
    /// Deletes host links in one request: they are moved into a fresh,
    /// unused link group first, and the group is deleted.
    DeleteLinks {
        names: Vec<String>,
    },
    AddAddress {
        target: Target,
        ifname: String,
        addr: IpNet,
    },
    DeleteAddress {
        target: Target,
        ifname: String,
        addr: IpNet,
    },
    LinkUp {
        target: Target,
        ifname: String,
    },
    LinkDown {
        target: Target,
        ifname: String,
    },
    SetMac {
        target: Target,
        ifname: String,
        mac: [u8; 6],
    },
    AddDefaultRoute {
        target: Target,
        ifname: String,
        gateway: IpAddr,
    },
    SetSysctl {
        target: Target,
        key: String,
        value: String,
    },
    /// Forgets tracked connections answered by these addresses: flows to
    /// published ports of an attachment that is going away.
    ForgetFlows {
        addrs: Vec<IpAddr>,
    },
    /// Writes `/etc/netns/NAMESPACE/resolv.conf`.
    WriteResolvConf {
        namespace: String,
        servers: Vec<IpAddr>,
    },
    /// Removes it (and the directory, when it is left empty).
    RemoveResolvConf {
        namespace: String,
    },
    /// Lets a bridge port send frames back out of the port they came in
    /// on: needed for a namespace to reach its own published port.
    SetHairpin {
        ifname: String,
    },
    /// Replaces nsnet's nftables table. `previous` is what to restore if a
    /// later step fails.
    Firewall {
        transaction: serde_json::Value,
        previous: serde_json::Value,
        /// The states the table is for after and before the step. When
        /// `transaction` is refused (someone flushed or changed the table),
        /// the whole table for `after` is rendered and applied instead:
        /// re-running a command then also repairs the firewall.
        after: Box<crate::model::State>,
        before: Box<crate::model::State>,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateNetns { name } => write!(f, "create namespace {name}"),
            Op::DeleteNetns { name } => write!(f, "delete namespace {name}"),
            Op::CreateNamespaces { names } => write!(f, "create {} namespaces", names.len()),
            Op::DeleteNamespaces { names } => write!(f, "delete {} namespaces", names.len()),
            Op::CreateBridge { name, .. } => write!(f, "create bridge {name}"),
            Op::CreateVeth {
                host, peer, netns, ..
            } => write!(f, "create veth {host} <-> {peer} in {netns}"),
            Op::DeleteLink { target, name } => write!(f, "delete link {name} in {target}"),
            Op::DeleteLinkGroup { names, .. } => match names.as_slice() {
                [one] => write!(f, "delete link {one} in host"),
                _ => write!(f, "delete {} links in host in one batch", names.len()),
            },
            Op::DeleteLinks { names } => match names.as_slice() {
                [one] => write!(f, "delete link {one} in host"),
                _ => write!(f, "delete {} links in host in one batch", names.len()),
            },
            Op::AddAddress {
                target,
                ifname,
                addr,
            } => write!(f, "add address {addr} to {ifname} in {target}"),
            Op::DeleteAddress {
                target,
                ifname,
                addr,
            } => write!(f, "delete address {addr} from {ifname} in {target}"),
            Op::LinkUp { target, ifname } => write!(f, "bring up {ifname} in {target}"),
            Op::LinkDown { target, ifname } => write!(f, "bring down {ifname} in {target}"),
            Op::SetMac {
                target,
                ifname,
                mac,
            } => {
                write!(
                    f,
                    "set MAC of {ifname} in {target} to {}",
                    crate::names::format_mac(mac)
                )
            }
            Op::AddDefaultRoute {
                target, gateway, ..
            } => write!(f, "add default route via {gateway} in {target}"),
            Op::SetSysctl { target, key, value } => write!(f, "set {key} = {value} in {target}"),
            Op::ForgetFlows { addrs } => {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                write!(f, "forget tracked connections to {}", list.join(", "))
            }
            Op::WriteResolvConf { namespace, .. } => {
                write!(f, "write /etc/netns/{namespace}/resolv.conf")
            }
            Op::RemoveResolvConf { namespace } => {
                write!(f, "remove /etc/netns/{namespace}/resolv.conf")
            }
            Op::SetHairpin { ifname } => write!(f, "turn on hairpin mode of bridge port {ifname}"),
            Op::Firewall { .. } => write!(f, "apply nftables table inet nsnet"),
        }
    }
}

impl Op {
    /// The firewall step that turns nsnet's table for `old` into the one
    /// for `new`, if anything changes. Its undo is the reverse change.
    pub fn firewall(old: &crate::model::State, new: &crate::model::State) -> Option<Op> {
        let transaction = crate::firewall::update(old, new)?;
        let previous =
            crate::firewall::update(new, old).unwrap_or_else(|| crate::firewall::render(old));
        Some(Op::Firewall {
            transaction,
            previous,
            after: Box::new(new.clone()),
            before: Box::new(old.clone()),
        })
    }
}

/// Gathers the namespace creations of a plan into one step at its start,
/// which creates them in parallel. Nothing before a namespace's creation
/// depends on it, so moving them first is safe.
pub fn batch_namespaces(ops: Vec<Op>) -> Vec<Op> {
    let names: Vec<String> = ops
        .iter()
        .filter_map(|o| match o {
            Op::CreateNetns { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    if names.len() < 2 {
        return ops;
    }
    std::iter::once(Op::CreateNamespaces { names })
        .chain(
            ops.into_iter()
                .filter(|o| !matches!(o, Op::CreateNetns { .. })),
        )
        .collect()
}

/// When nsnet's table is not intact (flushed, edited by hand), turns
/// element-only firewall steps into whole-table ones, so that any command
/// that touches the firewall also repairs it. `before` is the state the
/// live table should match.
pub fn heal_firewall(
    ops: &mut [Op],
    before: &crate::model::State,
) -> Result<(), crate::firewall::Error> {
    let incremental = ops.iter().any(
        |o| matches!(o, Op::Firewall { transaction, .. } if !crate::firewall::replaces_table(transaction)),
    );
    if !incremental || before.networks.is_empty() || crate::firewall::intact(before)? {
        return Ok(());
    }
    for op in ops.iter_mut() {
        if let Op::Firewall {
            transaction, after, ..
        } = op
        {
            *transaction = crate::firewall::render(after);
        }
    }
    Ok(())
}

/// A failed step.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct StepError {
    pub op: String,
    #[source]
    pub source: crate::kernel::Error,
}

impl StepError {
    /// The object was already gone: fine for a teardown.
    pub fn is_gone(&self) -> bool {
        self.source.is_gone()
    }
}

/// Carries out steps; returns each completed step's undo.
pub trait Kernel {
    fn apply(&mut self, op: &Op) -> Result<Option<Op>, crate::kernel::Error>;
}

/// A plan failed and was rolled back. `rollback` lists undo steps that
/// failed in turn (it should be empty).
#[derive(Debug)]
pub struct Failed {
    pub error: StepError,
    pub rollback: Vec<StepError>,
}

/// Applies `ops` all or nothing. On success, returns the steps that would
/// undo them (newest first), for a caller whose own next step may fail.
pub fn apply(ops: &[Op], kernel: &mut dyn Kernel) -> Result<Vec<Op>, Failed> {
    let mut undo: Vec<Op> = Vec::new();
    for op in ops {
        match kernel.apply(op) {
            Ok(u) => undo.extend(u),
            Err(source) => {
                let error = StepError {
                    op: op.to_string(),
                    source,
                };
                let rollback = teardown(undo.iter().rev(), kernel);
                return Err(Failed { error, rollback });
            }
        }
    }
    undo.reverse();
    Ok(undo)
}

/// Carries out every step even when some fail; returns the failures.
/// Steps on objects that are already gone count as done.
pub fn teardown<'a>(
    ops: impl IntoIterator<Item = &'a Op>,
    kernel: &mut dyn Kernel,
) -> Vec<StepError> {
    let mut errors = Vec::new();
    for op in ops {
        if let Err(source) = kernel.apply(op) {
            let e = StepError {
                op: op.to_string(),
                source,
            };
            if !e.is_gone() {
                errors.push(e);
            }
        }
    }
    errors
}

#[cfg(test)]
pub mod fake {
    //! A kernel that records steps and fails on request.
    use super::*;

    #[derive(Default)]
    pub struct FakeKernel {
        pub log: Vec<String>,
        pub fail_at: Option<usize>,
        pub calls: usize,
    }

    impl Kernel for FakeKernel {
        fn apply(&mut self, op: &Op) -> Result<Option<Op>, crate::kernel::Error> {
            self.calls += 1;
            if self.fail_at == Some(self.calls) {
                return Err(crate::kernel::Error::Injected(self.calls));
            }
            self.log.push(op.to_string());
            Ok(crate::kernel::undo_of(op, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeKernel;
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::CreateNetns { name: "ns1".into() },
            Op::CreateVeth {
                host: "ve-ns1".into(),
                peer: "eth0".into(),
                netns: NsRef::Named("ns1".into()),
                bridge: "br0".into(),
                mtu: None,
                mac: None,
                group: 9,
            },
            Op::AddAddress {
                target: Target::Ns(NsRef::Named("ns1".into())),
                ifname: "eth0".into(),
                addr: "10.0.0.2/24".parse().unwrap(),
            },
            Op::LinkUp {
                target: Target::Ns(NsRef::Named("ns1".into())),
                ifname: "eth0".into(),
            },
        ]
    }

    #[test]
    fn failure_undoes_completed_steps_in_reverse() {
        for k in 1..=4 {
            let mut kernel = FakeKernel {
                fail_at: Some(k),
                ..Default::default()
            };
            let failed = apply(&ops(), &mut kernel).unwrap_err();
            assert!(failed.rollback.is_empty());
            let done = &kernel.log[..k - 1];
            let undone = &kernel.log[k - 1..];
            // Every created object is deleted again, newest first.
            let expected: Vec<String> = done
                .iter()
                .rev()
                .filter_map(|d| match d.as_str() {
                    s if s.starts_with("create namespace") => {
                        Some("delete namespace ns1".to_string())
                    }
                    s if s.starts_with("create veth") => {
                        Some("delete link ve-ns1 in host".to_string())
                    }
                    s if s.starts_with("add address") => {
                        Some("delete address 10.0.0.2/24 from eth0 in namespace ns1".to_string())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(undone, expected.as_slice(), "failing at step {k}");
        }
    }

    #[test]
    fn success_applies_everything_once() {
        let mut kernel = FakeKernel::default();
        apply(&ops(), &mut kernel).unwrap();
        assert_eq!(kernel.log.len(), 4);
    }
}

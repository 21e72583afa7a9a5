//! Carrying plans out, all or nothing: each completed step yields its own
//! undo, and a failure undoes the completed steps in reverse order.
//! Teardown instead keeps going past failures and reports each one. Steps
//! are carried out by whatever `host::Kernel` the caller passes: the live
//! machine or a test's fake.
//!
//! May import `host`, `plan` and `model`; never `api` or the front ends.

pub use crate::host::{Error, Kernel};

use crate::plan::Op;

/// A failed step: the step itself, so that callers decide on it, not on
/// its sentence.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct StepError {
    pub op: Box<Op>,
    #[source]
    pub source: Error,
}

impl StepError {
    /// The object was already gone: fine for a teardown.
    pub fn is_gone(&self) -> bool {
        self.source.is_gone()
    }
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
                    op: Box::new(op.clone()),
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
                op: Box::new(op.clone()),
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
mod tests {
    use super::*;
    use crate::host::fake::Fake;
    use crate::host::Probe;
    use crate::model::NsRef;
    use crate::plan::Target;

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
                ipv6: true,
                handed: false,
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

    /// A machine with the bridge the steps attach to.
    fn machine() -> Fake {
        let fake = Fake::default();
        fake.state()
            .probe
            .carry_out(&Op::CreateBridge {
                name: "br0".into(),
                mac: [2, 0, 0, 0, 0, 1],
                mtu: None,
                group: None,
            })
            .unwrap();
        fake
    }

    #[test]
    fn failure_undoes_completed_steps_in_reverse() {
        let ns1 = || Target::Ns(NsRef::Named("ns1".into()));
        for k in 1..=4 {
            let mut fake = machine();
            fake.state().fail_at = Some(k);
            let failed = apply(&ops(), &mut fake).unwrap_err();
            assert!(failed.rollback.is_empty());
            assert!(matches!(failed.error.source, Error::Injected(n) if n == k));
            assert_eq!(
                *failed.error.op,
                ops()[k - 1],
                "the failed step, as a value"
            );
            let log = fake.take_applied();
            let (done, undone) = log.split_at(k - 1);
            assert_eq!(done, &ops()[..k - 1], "failing at step {k}");
            // Every created object is deleted again, newest first.
            let expected: Vec<Op> = done
                .iter()
                .rev()
                .filter_map(|d| match d {
                    Op::CreateNetns { .. } => Some(Op::DeleteNetns { name: "ns1".into() }),
                    Op::CreateVeth { .. } => Some(Op::DeleteLink {
                        target: Target::Host,
                        name: "ve-ns1".into(),
                    }),
                    Op::AddAddress { .. } => Some(Op::DeleteAddress {
                        target: ns1(),
                        ifname: "eth0".into(),
                        addr: "10.0.0.2/24".parse().unwrap(),
                    }),
                    _ => None,
                })
                .collect();
            assert_eq!(undone, expected.as_slice(), "failing at step {k}");
            // And the machine is as it was.
            let mut probe = fake.state().probe.clone();
            assert!(!probe.namespace_exists(&NsRef::Named("ns1".into())).unwrap());
            assert!(probe.link(&Target::Host, "ve-ns1").unwrap().is_none());
        }
    }

    #[test]
    fn success_applies_everything_once() {
        let mut fake = machine();
        apply(&ops(), &mut fake).unwrap();
        assert_eq!(fake.take_applied(), ops());
        let mut probe = fake.state().probe.clone();
        let inside = probe
            .addresses(&Target::Ns(NsRef::Named("ns1".into())))
            .unwrap();
        assert_eq!(inside.len(), 1);
    }
}

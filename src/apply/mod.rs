//! Carrying plans out. `Kernel` is the one seam between a plan and the
//! machine: `LiveKernel` (`live`) applies steps through the kernel layer
//! and the firewall backend, with the instrumentation of `instrument`
//! (`-v` timings, progress, `NSNET_FAIL_AT`/`NSNET_ABORT_AT`); tests use
//! `fake::FakeKernel`. Applying is all or nothing: each completed step
//! yields its own undo, and a failure undoes the completed steps in reverse
//! order. Teardown instead keeps going past failures and reports each one.
//!
//! May import `plan`, `model`, `kernel` and `firewall`; never `api` or the
//! front ends.

mod instrument;
pub mod live;

pub use instrument::{phase, set_verbose};
pub use live::LiveKernel;

use crate::plan::Op;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] crate::kernel::Error),
    #[error(transparent)]
    Firewall(#[from] crate::firewall::Error),
    #[error("injected failure at kernel operation {0} (NSNET_FAIL_AT)")]
    Injected(usize),
}

impl Error {
    /// The object an undo or teardown step wanted to remove is already gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Kernel(e) if e.is_gone())
    }
}

macro_rules! from_kernel {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Kernel(e.into())
            }
        }
    )*};
}
from_kernel!(
    crate::kernel::netlink::Error,
    crate::kernel::netns::Error,
    crate::kernel::sysctl::Error,
    crate::kernel::conntrack::Error
);

/// A failed step.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct StepError {
    pub op: String,
    #[source]
    pub source: Error,
}

impl StepError {
    /// The object was already gone: fine for a teardown.
    pub fn is_gone(&self) -> bool {
        self.source.is_gone()
    }
}

/// Carries out steps; returns each completed step's undo.
pub trait Kernel {
    fn apply(&mut self, op: &Op) -> Result<Option<Op>, Error>;
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
        fn apply(&mut self, op: &Op) -> Result<Option<Op>, Error> {
            self.calls += 1;
            if self.fail_at == Some(self.calls) {
                return Err(Error::Injected(self.calls));
            }
            self.log.push(op.to_string());
            Ok(crate::plan::undo_of(op, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeKernel;
    use super::*;
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

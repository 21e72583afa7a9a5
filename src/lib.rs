//! nsnet: Docker-style bridge networking for named Linux network namespaces.
//!
//! Front ends (the command line, and later topology files and CNI) build
//! requests; `Nsnet` validates them against the recorded model
//! (`model::State`), plans kernel and firewall steps (`plan`), and carries
//! them out through `kernel` (netlink, namespaces, sysctls) and `firewall`
//! (nftables).

pub mod attach;
pub mod check;
pub mod cni;
pub mod conntrack;
pub mod converge;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod journal;
pub mod kernel;
pub mod model;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod network;
pub mod nfnetlink;
pub mod ping;
pub mod plan;
pub mod ports;
pub mod resolv;
pub mod sandbox;
pub mod state;
pub mod sysctl;
pub mod topology;

pub use error::{Error, Result};

use std::path::PathBuf;

use kernel::LiveKernel;
use model::State;
use plan::Op;

/// The library's entry point: one state directory, and the operations on it.
pub struct Nsnet {
    store: state::Store,
}

impl Nsnet {
    pub fn new(state_dir: impl Into<PathBuf>) -> Nsnet {
        Nsnet {
            store: state::Store::new(state_dir),
        }
    }

    /// The recorded state (read without taking the lock).
    pub fn state(&self) -> Result<State> {
        Ok(self.store.read()?)
    }

    /// Takes the lock and loads the state, first finishing a command that
    /// was interrupted (see `journal`).
    pub(crate) fn begin(&self) -> Result<(state::Lock, State)> {
        let lock = self.store.lock()?;
        if let Some(j) = self.store.read_journal(&lock)? {
            let current = self.store.load(&lock)?;
            // Recorded already: the command died just before tidying up.
            if current != j.after {
                let (kept, ops) = journal::recover(&j.before, &j.after);
                let errors = plan::teardown(&ops, &mut LiveKernel::new());
                if !errors.is_empty() {
                    return Err(Error::Teardown(errors));
                }
                self.store.save(&lock, &kept)?;
            }
            self.store.remove_journal(&lock)?;
        }
        let state = self.store.load(&lock)?;
        Ok((lock, state))
    }

    /// Carries out `ops`, which take the kernel from `before` to `after`,
    /// and records `after`. The intent is journaled first, so that a kill
    /// at any point is finished by the next command. `AllOrNothing` undoes
    /// completed steps when one fails; `KeepGoing` (teardown) carries on
    /// past failures, reports them and keeps the old record for a retry.
    pub(crate) fn commit(
        &self,
        lock: &state::Lock,
        before: &State,
        after: &State,
        ops: &[Op],
        mode: Mode,
        kernel: &mut LiveKernel,
    ) -> Result<()> {
        let journal = model::Journal {
            before: before.clone(),
            after: after.clone(),
        };
        self.store.write_journal(lock, &journal)?;
        match mode {
            Mode::AllOrNothing => match plan::apply(ops, kernel) {
                Err(failed) => {
                    // A clean rollback left `before`; a failed one leaves
                    // the journal for the next command to finish.
                    if failed.rollback.is_empty() {
                        self.store.remove_journal(lock)?;
                    }
                    return Err(failed.into());
                }
                Ok(undo) => {
                    if let Err(e) = self.store.save(lock, after) {
                        let errors = plan::teardown(&undo, kernel);
                        if !errors.is_empty() {
                            return Err(Error::Teardown(errors));
                        }
                        self.store.remove_journal(lock)?;
                        return Err(e.into());
                    }
                }
            },
            Mode::KeepGoing => {
                let errors = plan::teardown(ops, kernel);
                if !errors.is_empty() {
                    self.store.remove_journal(lock)?;
                    return Err(Error::Teardown(errors));
                }
                self.store.save(lock, after)?;
            }
        }
        self.store.remove_journal(lock)?;
        Ok(())
    }
}

/// How `Nsnet::commit` treats a failing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    AllOrNothing,
    KeepGoing,
}

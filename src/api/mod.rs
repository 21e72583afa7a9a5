//! The library's face: `Nsnet` and its commands. Each command takes the
//! lock, finishes an interrupted command (the journal), gathers facts
//! through a `check::Probe`, plans (pure), and commits through `apply`.
//! Front ends (`cli`, `topology`, `cni`) call these and nothing below.
//!
//! May import every layer below it: `model`, `plan`, `apply`, `check`,
//! `store`, `kernel`, `firewall`; never a front end.

mod attach;
mod check;
mod converge;
pub mod dns;
mod docker;
pub mod error;
pub(crate) mod facts;
pub mod lab;
pub mod live;
mod network;
pub mod nodes;
pub mod overlay;
pub mod pingall;
pub mod preview;
pub mod trace;
pub mod view;

pub use crate::check::{Finding, Report};
pub use crate::host::{phase, set_verbose, Machine};
pub use crate::kernel::memory_file;
pub(crate) use attach::heal_firewall;
pub use error::{require_root, Error, Result};

use std::path::PathBuf;

use crate::apply::{self, Kernel};
use crate::host::LiveMachine;
use crate::model::State;
use crate::plan::{self, Op};
use crate::store;

/// The library's entry point: one state directory, and the operations on it.
pub struct Nsnet {
    store: store::Store,
    /// The machine every command works on, chosen once; shared with the
    /// agent's threads.
    machine: std::sync::Arc<dyn Machine>,
    /// Things a command did that the user should hear of although it
    /// succeeded (front ends print them).
    notices: std::cell::RefCell<Vec<String>>,
}

/// How `Nsnet::commit` treats a failing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Undo the completed steps when one fails (making things).
    AllOrNothing,
    /// Carry on past failures and report them all (removing things).
    KeepGoing,
}

impl Nsnet {
    /// nsnet on this machine, with its state in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Nsnet {
        Nsnet::on(state_dir, Box::new(LiveMachine))
    }

    /// nsnet on `machine` (a test's fake), with its state in `state_dir`.
    pub fn on(state_dir: impl Into<PathBuf>, machine: Box<dyn Machine>) -> Nsnet {
        Nsnet {
            store: store::Store::new(state_dir),
            machine: machine.into(),
            notices: Default::default(),
        }
    }

    /// The machine, for work that outlives one command (the agent's
    /// threads program overlay peers on it).
    pub fn machine(&self) -> std::sync::Arc<dyn Machine> {
        self.machine.clone()
    }

    /// Refuses `what` on a machine nsnet may not change (not root).
    pub fn require_root(&self, what: &'static str) -> Result<()> {
        if self.machine.privileged() {
            Ok(())
        } else {
            Err(Error::NotRoot(what))
        }
    }

    /// A session on the machine for one command: its sockets and caches
    /// go with it.
    fn host(&self) -> Box<dyn crate::host::Host> {
        self.machine.open()
    }

    /// The notices of the commands so far, emptied.
    pub fn take_notices(&self) -> Vec<String> {
        self.notices.take()
    }

    fn notice(&self, text: String) {
        self.notices.borrow_mut().push(text);
    }

    /// The recorded state (read without taking the lock).
    pub fn state(&self) -> Result<State> {
        Ok(self.store.read()?)
    }

    /// Takes the lock and loads the state, first finishing a command that
    /// was interrupted (see `plan::recover`).
    pub fn begin(&self) -> Result<(store::Lock, State)> {
        let start = std::time::Instant::now();
        let lock = self.store.lock()?;
        if let Some(j) = self.store.read_journal(&lock)? {
            let current = self.store.load(&lock)?;
            let (before, after) = j.states(&current);
            // Recorded already: the command died just before tidying up.
            if current != after {
                let (kept, ops) = plan::recover::recover(&before, &after);
                let errors = apply::teardown(&ops, &mut *self.host());
                if !errors.is_empty() {
                    return Err(Error::Teardown(errors));
                }
                self.store.save(&lock, &kept)?;
            }
            self.store.remove_journal(&lock)?;
        }
        let state = self.store.load(&lock)?;
        crate::host::phase("lock and load the state", start);
        Ok((lock, state))
    }

    /// Carries out `ops`, which take the kernel from `before` to `after`,
    /// and records `after`. The intent is journaled first, so that a kill
    /// at any point is finished by the next command. `AllOrNothing` undoes
    /// completed steps when one fails; `KeepGoing` (teardown) carries on
    /// past failures, reports them and keeps the old record for a retry.
    pub fn commit(
        &self,
        lock: &store::Lock,
        before: &State,
        after: &State,
        ops: &[Op],
        mode: Mode,
        kernel: &mut dyn Kernel,
    ) -> Result<()> {
        let ops = &*plan::delete_what_is_made_again(ops);
        let start = std::time::Instant::now();
        let journal = crate::model::Journal::Change {
            change: crate::model::delta::diff(before, after),
        };
        self.store.write_journal(lock, &journal)?;
        crate::host::phase("write the journal", start);
        let crate::model::Journal::Change { change } = &journal else {
            unreachable!("written as a change just above")
        };
        match mode {
            Mode::AllOrNothing => self.commit_all_or_nothing(lock, change, after, ops, kernel)?,
            Mode::KeepGoing => {
                let errors = apply::teardown(ops, kernel);
                if !errors.is_empty() {
                    self.store.remove_journal(lock)?;
                    return Err(Error::Teardown(errors));
                }
                self.store.record(lock, change, after)?;
            }
        }
        self.store.remove_journal(lock)?;
        let start = std::time::Instant::now();
        self.ensure_dns(Some(before), after)?;
        crate::host::phase("serve DNS", start);
        Ok(())
    }

    fn commit_all_or_nothing(
        &self,
        lock: &store::Lock,
        change: &crate::model::delta::StateDelta,
        after: &State,
        ops: &[Op],
        kernel: &mut dyn Kernel,
    ) -> Result<()> {
        let undo = match apply::apply(ops, kernel) {
            Ok(undo) => undo,
            Err(failed) => {
                // A clean rollback left `before`; a failed one leaves the
                // journal for the next command to finish.
                if failed.rollback.is_empty() {
                    self.store.remove_journal(lock)?;
                }
                return Err(failed.into());
            }
        };
        let start = std::time::Instant::now();
        let saved = self.store.record(lock, change, after);
        crate::host::phase("record the state", start);
        if let Err(e) = saved {
            let errors = apply::teardown(&undo, kernel);
            if !errors.is_empty() {
                return Err(Error::Teardown(errors));
            }
            self.store.remove_journal(lock)?;
            return Err(e.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

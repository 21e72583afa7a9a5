//! nsnet: Docker-style bridge networking for named Linux network namespaces.
//!
//! Front ends (the command line, and later topology files and CNI) build
//! requests; `Nsnet` validates them against the recorded model
//! (`model::State`), plans kernel and firewall steps (`plan`), and carries
//! them out through `kernel` (netlink, namespaces, sysctls) and `firewall`
//! (nftables).

pub mod attach;
pub mod check;
pub mod conntrack;
pub mod error;
pub mod firewall;
pub mod ipam;
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

    /// Records `state`; if that fails, undoes the kernel steps just made so
    /// that the kernel and the record never disagree.
    fn save_or_undo(
        &self,
        lock: &state::Lock,
        state: &State,
        undo: Vec<Op>,
        kernel: &mut LiveKernel,
    ) -> Result<()> {
        if let Err(e) = self.store.save(lock, state) {
            let errors = plan::teardown(&undo, kernel);
            if !errors.is_empty() {
                return Err(Error::Teardown(errors));
            }
            return Err(e.into());
        }
        Ok(())
    }
}

//! The machine: the one privileged seam between nsnet and the host it runs
//! on. `Kernel` carries plan steps out; `Probe` asks read-only questions.
//! A `Machine` is chosen once, when `api::Nsnet` is built (youki's builder
//! carries its `Syscall` the same way), and opens a `Host` for each
//! command: `LiveMachine` opens a `Live` (netlink sockets, namespace
//! mounts, `/proc/sys`, conntrack, resolv.conf files, the firewall
//! backend, all held for one command), tests use `fake::Fake`, which
//! records typed steps and answers from tables. Nothing above this folder
//! makes a live kernel.
//!
//! May import `plan` (for `Op`), `model`, `kernel` and `firewall`.

mod instrument;
mod live;
mod live_probe;
mod probe;

#[cfg(test)]
pub mod fake;

pub use instrument::{phase, set_verbose};
pub use live::reap_parked;
use live::Live;
pub use probe::{NsState, Probe};

use crate::plan::Op;

/// Why a step, or a question to the machine, failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] crate::kernel::Error),
    #[error(transparent)]
    Firewall(#[from] crate::firewall::Error),
    /// nsnet's rules in Docker's DOCKER-USER chain (iptables).
    #[error("nsnet's rules in Docker's DOCKER-USER chain")]
    DockerUser(#[from] crate::firewall::docker_user::Error),
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

/// Carries out steps; returns each completed step's undo.
pub trait Kernel {
    fn apply(&mut self, op: &Op) -> Result<Option<Op>, Error>;
    /// Shows progress for a plan of `total` steps, where that is worth it
    /// (a terminal, many steps).
    fn set_progress(&mut self, _total: usize) {}
}

/// One command's use of the machine: it carries steps out and answers
/// questions, over the same sockets.
pub trait Host: Kernel + Probe {}

impl<T: Kernel + Probe> Host for T {}

/// The machine nsnet runs on, chosen once. Each command opens a `Host` on
/// it, whose sockets and caches (interface indexes) live as long as the
/// command: an open socket keeps a namespace alive, and a cached index
/// would outlive the link it names.
pub trait Machine: Send + Sync {
    fn open(&self) -> Box<dyn Host>;
    /// Whether nsnet may change this machine (root, for the live one).
    fn privileged(&self) -> bool;
}

/// The real machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveMachine;

impl Machine for LiveMachine {
    fn open(&self) -> Box<dyn Host> {
        Box::new(Live::new())
    }

    fn privileged(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }
}

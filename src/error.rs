//! The error every command returns, with the exit code the contract
//! promises: 1 operation failed, 2 invalid input, 3 not found, 4 conflict.

use crate::plan::{Failed, StepError};
use crate::{names, netns, state};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("nsnet needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to {0}")]
    NotRoot(&'static str),
    #[error("{}", failed_message(.0))]
    Apply(Failed),
    #[error("teardown incomplete: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Teardown(Vec<StepError>),
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Kernel(#[from] crate::kernel::Error),
    #[error("{0}")]
    Failed(String),
}

fn failed_message(f: &Failed) -> String {
    let mut msg = format!("{} (nothing was left behind)", f.error);
    if !f.rollback.is_empty() {
        msg = format!(
            "{}; rolling back also failed: {}",
            f.error,
            f.rollback
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    msg
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) => 2,
            Error::NotFound(_) => 3,
            Error::Conflict(_) => 4,
            _ => 1,
        }
    }

    /// A short stable word for `--json` consumers.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::NotRoot(_) => "permission",
            Error::Apply(_) => "apply_failed",
            Error::Teardown(_) => "teardown_incomplete",
            Error::State(_) => "state",
            Error::Kernel(_) => "kernel",
            Error::Failed(_) => "failed",
        }
    }
}

impl From<names::InvalidName> for Error {
    fn from(e: names::InvalidName) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<netns::Error> for Error {
    fn from(e: netns::Error) -> Self {
        match e {
            netns::Error::InvalidName { .. } | netns::Error::NotANamespace { .. } => {
                Error::Invalid(e.to_string())
            }
            netns::Error::NotFound(_) => Error::NotFound(e.to_string()),
            netns::Error::Exists(_) => Error::Conflict(e.to_string()),
            other => Error::Kernel(other.into()),
        }
    }
}

impl From<Failed> for Error {
    fn from(f: Failed) -> Self {
        Error::Apply(f)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Refuses early, with a clear message, when not running as root: the
/// kernel would otherwise answer the first step with a bare EPERM.
pub fn require_root(what: &'static str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot(what))
    }
}

impl From<crate::netlink::Error> for Error {
    fn from(e: crate::netlink::Error) -> Self {
        Error::Kernel(e.into())
    }
}

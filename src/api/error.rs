//! The error every command returns, with the exit code the contract
//! promises: 1 operation failed, 2 invalid input, 3 not found, 4 conflict.
//! Each variant carries its values; causes are `source`s, never printed
//! inline as well (`error_chain` prints the whole chain once).

use crate::apply::{self, Failed, StepError};
use crate::model::{Class, Rejection};
use crate::{error_chain, kernel, store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused before anything was made.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("nsnet needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to {0}")]
    NotRoot(&'static str),
    /// A step failed and the command was rolled back.
    #[error("{}", failed_message(.0))]
    Apply(Failed),
    #[error("teardown incomplete: {}", .0.iter().map(error_chain).collect::<Vec<_>>().join("; "))]
    Teardown(Vec<StepError>),
    #[error(transparent)]
    State(#[from] store::Error),
    /// Reading the machine (gathering facts, checking) failed.
    #[error(transparent)]
    Probe(apply::Error),
    /// A file the command reads is not valid (`location` is `file:line:col`
    /// or the file).
    #[error("{location}: {message}")]
    InvalidFile { location: String, message: String },
    /// A step outside a journaled change (it follows the record) failed.
    #[error(transparent)]
    Step(apply::StepError),
    /// A front end's daemon (the Docker driver) could not start serving.
    #[error("cannot serve {what}")]
    Serve {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("topology file {path} does not exist")]
    NoSuchFile { path: String },
    #[error("reading topology file {path}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}")]
    WriteFile {
        path: String,
        source: std::io::Error,
    },
    #[error("topology file {path} is {size} bytes; the limit is {limit}")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error(transparent)]
    Ping(#[from] kernel::ping::Error),
    #[error(transparent)]
    Sandbox(#[from] kernel::sandbox::Error),
    #[error(transparent)]
    Capture(#[from] kernel::capture::Error),
    #[error("{what} of command {command:?} in node {node}")]
    NodeProcess {
        node: String,
        command: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("node file {} of {node} would not be seen: {} does not exist on the host (a node's files are bound over what exists)", path.display(), needed.display())]
    NodeFileUnseen {
        node: String,
        path: std::path::PathBuf,
        needed: std::path::PathBuf,
    },
    #[error("node file {} of {node}: reading {}", path.display(), source_file.display())]
    NodeFileSource {
        node: String,
        path: std::path::PathBuf,
        source_file: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("exec command {command:?} in node {node} failed ({status}):\n{output}")]
    NodeExecFailed {
        node: String,
        command: String,
        status: String,
        output: String,
    },
    #[error("process {command:?} in node {node} exited at once ({status}); its output is in {}", log.display())]
    NodeProcessExited {
        node: String,
        command: String,
        status: String,
        log: std::path::PathBuf,
    },
    /// etcd (the cluster store of overlay networks) failed or is out of reach.
    #[error(transparent)]
    Cluster(crate::cluster::Error),
    #[error("underlay address {addr} is on no interface of this host")]
    NoUnderlay { addr: std::net::IpAddr },
    #[error(
        "etcd endpoint {endpoint} is not a URL of the form http://HOST:PORT or https://HOST:PORT"
    )]
    BadEndpoint { endpoint: String },
    /// Starting or running the host's DNS server failed.
    #[error("DNS server: {what}")]
    DnsServer {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("command arguments must not contain NUL bytes")]
    NulInArguments,
    #[error("exec in namespace {namespace}: {what}")]
    Exec {
        namespace: String,
        what: String,
        source: nix::Error,
    },
}

fn failed_message(f: &Failed) -> String {
    if f.rollback.is_empty() {
        return format!("{} (nothing was left behind)", error_chain(&f.error));
    }
    format!(
        "{}; rolling back also failed: {}",
        error_chain(&f.error),
        f.rollback
            .iter()
            .map(error_chain)
            .collect::<Vec<_>>()
            .join("; ")
    )
}

impl Error {
    /// The contract's class, for errors that have one.
    pub fn class(&self) -> Option<Class> {
        match self {
            Error::Rejected(r) => Some(r.class()),
            Error::InvalidFile { .. } | Error::FileTooLarge { .. } | Error::ReadFile { .. } => {
                Some(Class::Invalid)
            }
            Error::NulInArguments | Error::BadEndpoint { .. } | Error::NoUnderlay { .. } => {
                Some(Class::Invalid)
            }
            Error::NoSuchFile { .. } | Error::NodeFileSource { .. } => Some(Class::NotFound),
            Error::NodeFileUnseen { .. } => Some(Class::Invalid),
            Error::Cluster(c) if c.is_bad_setting() => Some(Class::Invalid),
            Error::Capture(kernel::capture::Error::NoInterface { .. }) => Some(Class::NotFound),
            Error::Capture(
                kernel::capture::Error::Filter { .. } | kernel::capture::Error::NoCompiler { .. },
            ) => Some(Class::Invalid),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        self.class().map_or(1, Class::exit_code)
    }

    /// A short stable word for `--json` consumers.
    pub fn kind(&self) -> &'static str {
        match (self.class(), self) {
            (Some(Class::Invalid), _) => "invalid",
            (Some(Class::NotFound), _) => "not_found",
            (Some(Class::Conflict), _) => "conflict",
            (None, Error::NotRoot(_)) => "permission",
            (None, Error::Apply(_)) => "apply_failed",
            (None, Error::Teardown(_)) => "teardown_incomplete",
            (None, Error::State(_)) => "state",
            (None, Error::Probe(_)) => "kernel",
            (None, Error::Cluster(_)) => "cluster",
            _ => "failed",
        }
    }
}

impl From<Failed> for Error {
    fn from(f: Failed) -> Self {
        Error::Apply(f)
    }
}

macro_rules! rejection_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Rejected(e.into())
            }
        }
    )*};
}
rejection_from!(
    crate::model::names::InvalidName,
    crate::model::nsref::InvalidNsName,
    crate::model::ports::PortError
);

/// Kernel errors met outside a plan step: a namespace that is not there or
/// not one is the user's to fix (3, 2); anything else is a failed probe.
impl From<kernel::netns::Error> for Error {
    fn from(e: kernel::netns::Error) -> Self {
        use kernel::netns::Error as E;
        match e {
            E::InvalidName(n) => Error::Rejected(n.into()),
            E::NotFound(namespace) => Error::Rejected(Rejection::NoSuchNamespace {
                namespace,
                suggestion: None,
            }),
            E::Exists(namespace) => Error::Rejected(Rejection::NamespaceExists { namespace }),
            E::NotANamespace { path } => Error::Rejected(Rejection::NotANamespace { path }),
            other => Error::Probe(apply::Error::Kernel(other.into())),
        }
    }
}

/// A failed probe: a namespace the user named that is not there, or not
/// one, is the user's to fix; anything else is the machine's.
impl From<apply::Error> for Error {
    fn from(e: apply::Error) -> Self {
        match e {
            apply::Error::Kernel(kernel::Error::Netns(n)) => n.into(),
            other => Error::Probe(other),
        }
    }
}

impl From<kernel::netlink::Error> for Error {
    fn from(e: kernel::netlink::Error) -> Self {
        Error::Probe(apply::Error::Kernel(e.into()))
    }
}

/// A refusal that etcd's records decided (a conflicting definition, no
/// free host subnet) is a refusal like any other.
impl From<crate::cluster::Error> for Error {
    fn from(e: crate::cluster::Error) -> Self {
        match e {
            crate::cluster::Error::Rejected(r) => Error::Rejected(r),
            other => Error::Cluster(other),
        }
    }
}

impl From<crate::firewall::Error> for Error {
    fn from(e: crate::firewall::Error) -> Self {
        Error::Probe(apply::Error::Firewall(e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let e = Error::State(store::Error::Read {
            path: "/run/nsnet/state.json".into(),
            source: io,
        });
        let text = error_chain(&e);
        assert_eq!(text.matches("Permission denied").count(), 1, "{text}");
        assert!(
            text.starts_with("reading /run/nsnet/state.json: "),
            "{text}"
        );
        assert_eq!(e.exit_code(), 1);
        let r = Error::from(Rejection::no_such_network("x", &[]));
        assert_eq!((r.exit_code(), r.kind()), (3, "not_found"));
    }
}

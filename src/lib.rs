//! nsnet: Docker-style bridge networking for named Linux network namespaces.
//!
//! The folders are the layers, and data flows one way through them:
//!
//! ```text
//! front ends   cli (in the binary), topology, cni
//!      |          parse their syntax once into model requests
//!      v
//! api          Nsnet: lock + journal, facts, plan, commit
//!      |
//!      +--> check    drift as typed findings; the read-only Probe
//!      +--> plan     pure: Op + undo, create/remove/connect/disconnect, recovery
//!      +--> apply    the Kernel trait, all-or-nothing apply, teardown, LiveKernel
//!      +--> store    state file, lock, journal file
//!      v
//! kernel       netlink, nf_tables/conntrack, netns, sysctl, resolv, ping, sandbox
//! firewall     rules (pure rendering) + the nft backend
//! model        State, Network, Attachment, NsRef, names, ports, IPAM, requests (pure)
//! ```
//!
//! A folder imports only folders below it; `model` imports nothing.

pub mod agent;
pub mod api;
pub mod apply;
pub mod check;
pub mod cluster;
pub mod cni;
pub mod dns;
pub mod firewall;
pub mod host;
pub mod kernel;
pub mod model;
pub mod plan;
pub mod store;
pub mod topology;

pub use api::{require_root, Error, Mode, Nsnet, Result};

/// An error and its causes, outermost first, joined with ": ": each cause
/// is printed once, by this, and never inline by the error above it.
pub fn error_chain<E: std::error::Error + ?Sized>(e: &E) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

//! nsnet: Docker-style bridge networking for named Linux network namespaces.
//!
//! The folders are the layers, and data flows one way through them:
//!
//! ```text
//! front ends   cli (the binary), topology, cni, agent, docker, netavark
//!      |          parse their syntax once into model requests; import only api and model
//!      v
//! api          Nsnet: lock + journal, facts, plan, commit; on the Machine it was built with
//!      |
//!      +--> check    drift as typed findings
//!      +--> plan     pure: Op + undo, create/remove/connect/disconnect, converge, recovery
//!      +--> apply    all-or-nothing apply, teardown (over any host::Kernel)
//!      +--> host     the machine seam: Kernel + Probe, the live machine, a fake for tests
//!      +--> store    state file, lock, journal file
//!      +--> cluster  etcd (overlay networks)
//!      +--> dns      the DNS server
//!      v
//! kernel       netlink, nf_tables/conntrack, netns, sysctl, resolv, ping, sandbox
//! firewall     rules (pure rendering), drift, the nft backend
//! model        State, Network, Attachment, NsRef, names, ports, IPAM, requests (pure)
//! ```
//!
//! A folder imports only folders below it; `model` imports nothing
//! (`tests/layers.rs` checks it). Only the door (`api`), the values
//! (`model`) and the front ends are public; `kernel` and `dns` stay public
//! for the integration tests' oracles and the fuzzers, and are no door for
//! front ends (the layering test says so).

pub mod agent;
pub mod api;
mod apply;
mod check;
mod cluster;
pub mod cni;
#[doc(hidden)]
pub mod dns;
pub mod docker;
mod firewall;
mod host;
#[doc(hidden)]
pub mod kernel;
pub mod model;
pub mod netavark;
mod plan;
mod store;
pub mod topology;
pub mod ui;

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

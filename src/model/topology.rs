//! A topology file as values: what `nsnet up` makes the host match, once
//! the file is parsed and validated (`topology`), and what a convergence
//! reports. Pure data.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::lab::{Endpoint, Impairment, LinkRequest, Route};
use super::{ConnectRequest, CreateRequest};

/// A validated topology: requests for the model, plus per-namespace DNS.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The file's canonical path: it marks what an `up` of it created.
    pub owner: String,
    pub networks: Vec<CreateRequest>,
    pub attachments: Vec<ConnectRequest>,
    pub dns: BTreeMap<String, Vec<IpAddr>>,
    /// Links, routers, routes and impairments.
    pub lab: LabSpec,
}

/// A namespace's router settings in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Router {
    pub forward: bool,
    pub routes: Vec<Route>,
}

/// The lab objects a file asks for.
#[derive(Debug, Clone, Default)]
pub struct LabSpec {
    pub links: Vec<LinkRequest>,
    pub routers: BTreeMap<String, Router>,
    pub impairments: BTreeMap<Endpoint, Impairment>,
    /// Commands to run in namespaces, by namespace.
    pub processes: BTreeMap<String, NodeCommands>,
}

/// What runs in a node: `exec` once when `up` makes the node, `run` for
/// as long as the node lives (each a `sh -c` command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCommands {
    pub exec: Vec<String>,
    pub run: Vec<String>,
}

/// What a command changed (or, with `--dry-run`, would change).
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub changes: Vec<String>,
    pub applied: bool,
}

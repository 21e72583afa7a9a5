//! Name resolution between namespaces: the zones each network resolves
//! (`records`, pure), the answer to one query (`answer`, pure, hickory-proto
//! for the wire format) and the host's server process (`server`, `nsnet
//! dns`). A small synchronous loop, not a framework: queries are answered
//! from memory in microseconds, and only forwarding waits on the network,
//! on threads of its own.
//!
//! Imports `model`, `store` and `kernel` (signals).

pub mod answer;
pub mod records;
pub mod server;

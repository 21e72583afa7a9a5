//! Plans without a machine: the record a command would leave, computed
//! from the record before it alone (a host with nothing of its own on it).
//! Pure; for previews and for front ends' tests of what they print.

use super::Result;
use crate::model::{ConnectRequest, CreateRequest, State};
use crate::plan::attach::{plan_connect, NsFacts};
use crate::plan::network::{plan_create, HostFacts};

/// The record after `network create` of `req`.
pub fn create(state: &State, req: &CreateRequest) -> Result<State> {
    Ok(plan_create(state, req, &HostFacts::default())?.0)
}

/// The record after `connect` of `req`; `exists` says whether its
/// namespace exists already (nsnet then does not make it).
pub fn connect(state: &State, req: &ConnectRequest, exists: bool) -> Result<State> {
    let facts = NsFacts {
        exists,
        ..NsFacts::default()
    };
    Ok(plan_connect(state, req, &facts)?.0)
}

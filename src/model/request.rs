//! What a user asks for, as typed values. Every front end (command line,
//! topology file, CNI) parses its own syntax into these once, with the
//! parsers of this folder, so that planning never re-parses text.

use std::net::IpAddr;

use ipnet::IpNet;

use super::ports::PortMapping;
use super::rejection::RequestedIp;
use super::{CniKey, NsRef};

/// The interface name inside the namespace when none is given.
pub const DEFAULT_IFNAME: &str = "eth0";

/// `network create`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub name: String,
    pub subnets: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    pub bridge: Option<String>,
    pub internal: bool,
    /// Outgoing traffic is masqueraded (never on an internal network).
    pub masquerade: bool,
    /// Other networks cannot reach this one.
    pub isolate: bool,
    pub mtu: Option<u32>,
}

impl CreateRequest {
    /// A request with the defaults: masquerade and isolation on.
    pub fn named(name: &str) -> CreateRequest {
        CreateRequest {
            name: name.to_string(),
            subnets: Vec::new(),
            gateways: Vec::new(),
            bridge: None,
            internal: false,
            masquerade: true,
            isolate: true,
            mtu: None,
        }
    }

    /// Whether the network masquerades: never when internal.
    pub fn masquerades(&self) -> bool {
        self.masquerade && !self.internal
    }
}

#[cfg(test)]
impl CreateRequest {
    /// A request with just a name and subnets, for unit tests.
    pub(crate) fn for_test(name: &str, subnets: &[&str]) -> CreateRequest {
        CreateRequest {
            subnets: subnets
                .iter()
                .map(|s| s.parse().expect("test subnet"))
                .collect(),
            ..CreateRequest::named(name)
        }
    }
}

/// `connect`, for one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    pub network: String,
    pub namespace: NsRef,
    /// At most one per family.
    pub ips: Vec<RequestedIp>,
    pub ifname: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub publish: Vec<PortMapping>,
    /// Set when a CNI runtime asks: how it names the attachment.
    pub cni: Option<CniKey>,
}

impl ConnectRequest {
    pub fn new(network: &str, namespace: NsRef) -> ConnectRequest {
        ConnectRequest {
            network: network.to_string(),
            namespace,
            ips: Vec::new(),
            ifname: None,
            mac: None,
            publish: Vec::new(),
            cni: None,
        }
    }

    /// The interface name inside the namespace.
    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or(DEFAULT_IFNAME)
    }
}

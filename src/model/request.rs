//! What a user asks for, as typed values. Every front end (command line,
//! topology file, CNI) parses its own syntax into these once, with the
//! parsers of this folder, so that planning never re-parses text.

use std::net::IpAddr;

use ipnet::IpNet;

use super::ports::PortMapping;
use super::rejection::RequestedIp;
use super::{CniKey, GatewayMode, NsRef};

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
    /// How the network meets the outside: IPv4, and IPv6 when different.
    pub gateway_mode: GatewayMode,
    pub gateway_mode_v6: Option<GatewayMode>,
    /// Namespaces of the network may talk to each other.
    pub icc: bool,
    /// Host interfaces exempt from direct-access protection.
    pub trusted_interfaces: Vec<String>,
    /// Other networks cannot reach this one.
    pub isolate: bool,
    pub mtu: Option<u32>,
    /// Names resolve on the network (nsnet's DNS server).
    pub dns: bool,
    pub dns_domain: Option<String>,
    pub dns_servers: Vec<IpAddr>,
    /// A network across hosts (driver `overlay`), to define or join.
    pub overlay: Option<super::overlay::OverlayRequest>,
    /// This host's part of it, once joined in etcd (the host subnet is then
    /// in `subnets`, its gateway in `gateways`): set by the library.
    pub joined: Option<super::overlay::Overlay>,
    /// The Docker network ID, when Docker asks for the network.
    pub docker: Option<String>,
    /// The podman network ID, when netavark asks for the network.
    pub netavark: Option<String>,
    /// A network on the LAN (drivers `macvlan`, `host-device`).
    pub lan: Option<super::lan::LanRequest>,
}

impl CreateRequest {
    /// Whether the network gets nsnet's DNS: asked for (the default), and
    /// an address of the host's to answer on (on the LAN: `--host-access`).
    pub fn serves_dns(&self) -> bool {
        self.dns
            && self
                .lan
                .as_ref()
                .is_none_or(super::lan::LanRequest::host_access)
    }

    /// The driver of the network asked for.
    pub fn driver(&self) -> super::DriverKind {
        use super::lan::LanRequest;
        match (&self.overlay, &self.joined, &self.lan) {
            (None, None, None) => super::DriverKind::Bridge,
            (None, None, Some(LanRequest::Macvlan { .. })) => super::DriverKind::Macvlan,
            (None, None, Some(LanRequest::HostDevice { .. })) => super::DriverKind::HostDevice,
            _ => super::DriverKind::Overlay,
        }
    }

    /// A request with the defaults: `nat` mode, isolation and ICC on.
    pub fn named(name: &str) -> CreateRequest {
        CreateRequest {
            name: name.to_string(),
            subnets: Vec::new(),
            gateways: Vec::new(),
            bridge: None,
            internal: false,
            gateway_mode: GatewayMode::Nat,
            gateway_mode_v6: None,
            icc: true,
            trusted_interfaces: Vec::new(),
            isolate: true,
            mtu: None,
            dns: true,
            dns_domain: None,
            dns_servers: Vec::new(),
            overlay: None,
            joined: None,
            docker: None,
            netavark: None,
            lan: None,
        }
    }

    /// The IPv6 gateway mode: the IPv4 one unless given.
    pub fn mode_v6(&self) -> GatewayMode {
        self.gateway_mode_v6.unwrap_or(self.gateway_mode)
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
    /// Publish even over a host service listening on the port (`--force`).
    pub take_host_ports: bool,
    /// More DNS names of the namespace on this network.
    pub aliases: Vec<String>,
    /// Set when Docker joins an endpoint (its ID): the namespace end is
    /// handed to Docker.
    pub docker: Option<String>,
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
            take_host_ports: false,
            aliases: Vec::new(),
            docker: None,
        }
    }

    /// The interface name inside the namespace.
    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or(DEFAULT_IFNAME)
    }
}

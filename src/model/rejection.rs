//! Why a request is refused before anything is made: each variant carries
//! the offending values, renders the one sentence a user sees, and falls in
//! one of the contract's classes (exit 2 invalid, 3 not found, 4 conflict).
//! Front ends decide on the variant or its class, never on the text.

use std::net::IpAddr;

use ipnet::IpNet;

use super::ipam::IpamError;
use super::names::InvalidName;
use super::nsref::{InvalidNsName, NsRef};
use super::ports::{PortError, PortMapping};

/// The contract's classes of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Invalid,
    NotFound,
    Conflict,
}

impl Class {
    pub fn exit_code(self) -> i32 {
        match self {
            Class::Invalid => 2,
            Class::NotFound => 3,
            Class::Conflict => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    // Invalid input (2).
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error(transparent)]
    NsName(#[from] InvalidNsName),
    #[error(transparent)]
    Port(#[from] PortError),
    /// A value that does not parse; `expected` says what would.
    #[error("invalid {what} {value:?}: {expected}")]
    Unparsable {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("unknown options {}: nsnet knows {}", options.join(", "), known.join(", "))]
    UnknownOptions {
        options: Vec<String>,
        known: Vec<&'static str>,
    },
    #[error("network {network} belongs to Docker (network ID {id}): remove it with `docker network rm`, or pass --force")]
    OwnedByDocker { network: String, id: String },
    #[error("{option} needs https:// etcd endpoints, but {endpoint} is plain HTTP")]
    TlsWithoutHttps {
        option: &'static str,
        endpoint: String,
    },
    #[error("{option} is not an option of a {driver} network")]
    NotForDriver {
        option: &'static str,
        driver: &'static str,
    },
    #[error("{option} is needed: {reason}")]
    MissingOption {
        option: &'static str,
        reason: &'static str,
    },
    /// A number outside the range it must be in.
    #[error("invalid {what} {value}: {expected}")]
    OutOfRange {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid subnet {value:?}: host bits are set; did you mean {network}?")]
    HostBitsSet { value: String, network: IpNet },
    #[error("subnet {subnet}: a network has at most one IPv4 and one IPv6 subnet")]
    TwoSubnetsOfAFamily { subnet: IpNet },
    #[error("invalid MTU {mtu}: must be between {min} and {max}")]
    MtuOutOfRange { mtu: u32, min: u32, max: u32 },
    #[error("invalid MTU {mtu}: an IPv6 subnet needs at least {min}")]
    MtuTooSmallForIpv6 { mtu: u32, min: u32 },
    #[error(
        "network name {network:?} cannot be the bridge's name ({reason}); pass --bridge IFNAME"
    )]
    NetworkNameNotAnIfname { network: String, reason: String },
    #[error("invalid gateway: {0}")]
    BadGateway(IpamError),
    #[error("gateway {gateway} belongs to no subnet of network {network} (or there are two gateways of one family)")]
    GatewayOutsideSubnets { gateway: IpAddr, network: String },
    #[error("address {value}: network {network} has no {family} subnet")]
    NoSubnetOfFamily {
        value: String,
        network: String,
        family: &'static str,
    },
    #[error(
        "address {value}: prefix /{prefix} does not match subnet {subnet} of network {network}"
    )]
    PrefixMismatch {
        value: String,
        prefix: u8,
        subnet: IpNet,
        network: String,
    },
    #[error("address {value}: at most one address per family per attachment")]
    TwoAddressesOfAFamily { value: String },
    /// IPv6 has no route_localnet: after DNAT, a packet from ::1 may not
    /// leave the loopback device, so the kernel cannot forward such a port.
    #[error("invalid published port {mapping:?}: the kernel cannot forward ports published on ::1 (IPv6 has no route_localnet); publish on 127.0.0.1 or on a host address")]
    PublishedOnIpv6Loopback { mapping: String },
    #[error("invalid published port {mapping:?}: host address {host_ip} is {family} but network {network} has no {family} subnet")]
    PublishedFamilyMissing {
        mapping: String,
        host_ip: IpAddr,
        family: &'static str,
        network: String,
    },
    #[error("{0}")]
    Address(IpamError),
    #[error(
        "network {network}: gateway mode isolated is only for internal networks (add --internal)"
    )]
    IsolatedNeedsInternal { network: String },
    #[error("network {network}: gateway mode isolated applies to both address families")]
    IsolatedForOneFamily { network: String },
    #[error(
        "invalid gateway mode {value:?}: expected one of nat, nat-unprotected, routed, isolated"
    )]
    BadGatewayMode { value: String },
    #[error("--no-masquerade is gateway mode routed; it contradicts --gateway-mode {mode}")]
    MasqueradeContradiction { mode: String },
    #[error("{namespace} is the host's network namespace: nsnet attaches namespaces to its networks, never the host itself")]
    HostNamespace { namespace: String },

    #[error("{path} is not a network namespace")]
    NotANamespace { path: String },
    #[error("namespace {namespace} is listed twice")]
    ListedTwice { namespace: NsRef },
    #[error("unexpected argument {value:?}: {hint}")]
    StrayArgument { value: String, hint: String },
    #[error("{what} apply to one namespace; connect the namespaces one by one")]
    OptionsForOneNamespace { what: &'static str },

    // Not found (3).
    #[error("network {network} does not exist{}", .suggestion.as_ref().map(|s| format!("; did you mean {s}?")).unwrap_or_default())]
    NoSuchNetwork {
        network: String,
        /// The closest existing name, if one is close.
        suggestion: Option<String>,
    },
    #[error("namespace {namespace} does not exist{}", .suggestion.as_ref().map(|s| format!("; did you mean {s}?")).unwrap_or_default())]
    NoSuchNamespace {
        namespace: String,
        /// The closest existing name, if one is close.
        suggestion: Option<String>,
    },
    #[error("namespace {to} shares no network with {from}: ping it by address")]
    NoSharedNetwork { from: String, to: String },
    #[error("Docker network {id} is not an nsnet network here (nsnet's record has no network of that ID)")]
    NoSuchDockerNetwork { id: String },
    #[error("nsnet has no address pool {id} for Docker (released already?)")]
    NoSuchPool { id: String },
    #[error("Docker endpoint {endpoint} is not on network {network}")]
    NoSuchEndpoint { endpoint: String, network: String },
    #[error("namespace {namespace} is not connected to network {network}{}", .suggestion.as_ref().map(|s| format!("; did you mean {s}?")).unwrap_or_default())]
    NotConnected {
        namespace: NsRef,
        network: String,
        /// The closest namespace that is connected, if one is close.
        suggestion: Option<String>,
    },

    // Conflicts (4).
    #[error("network {network} already exists")]
    NetworkExists { network: String },
    #[error("namespace {namespace} already exists")]
    NamespaceExists { namespace: String },
    #[error("bridge {bridge} already belongs to network {network}")]
    BridgeTaken { bridge: String, network: String },
    #[error("subnet {subnet} overlaps subnet {theirs} of network {network}")]
    SubnetOverlap {
        subnet: IpNet,
        theirs: IpNet,
        network: String,
    },
    #[error("no free subnet left in nsnet's pools; pass --subnet")]
    NoFreeSubnet,
    #[error("VNI {vni} is already used by overlay network {network}")]
    VniTaken { vni: u32, network: String },
    #[error("host subnet length /{length} does not fit cluster subnet {subnet} (it must be from /{} to /29)", .subnet.prefix_len())]
    HostSubnetLength { subnet: ipnet::Ipv4Net, length: u8 },
    #[error(
        "overlay network {network} exists in etcd with other settings ({theirs}); asked for {ours}"
    )]
    OverlayConflict {
        network: String,
        theirs: String,
        ours: String,
    },
    #[error("overlay network {network} has no free host subnet left: all {count} /{length} subnets of {subnet} are claimed")]
    NoFreeHostSubnet {
        network: String,
        subnet: ipnet::Ipv4Net,
        length: u8,
        count: u64,
    },
    #[error("the {what} of an overlay network must be IPv4 ({value} is not)")]
    OverlayNeedsIpv4 { what: &'static str, value: String },
    #[error("interface {ifname} already exists and is not a bridge ({kind})")]
    NotABridge { ifname: String, kind: String },
    #[error("network {network} is in use by {} attachment(s) ({}); disconnect them first or pass --force", .namespaces.len(), .namespaces.join(", "))]
    NetworkInUse {
        network: String,
        namespaces: Vec<String>,
    },
    #[error("namespace {namespace} is connected to network {network}; disconnect it first")]
    NamespaceInUse { namespace: String, network: String },
    #[error("namespace {namespace} is already connected to network {network}")]
    AlreadyConnected { namespace: NsRef, network: String },
    #[error("container {container_id} already has interface {ifname} on network {network}")]
    CniAttachmentExists {
        container_id: String,
        ifname: String,
        network: String,
    },
    #[error(
        "namespace {namespace} already has interface {ifname} (network {network}); pass --ifname"
    )]
    IfnameOnOtherNetwork {
        namespace: NsRef,
        ifname: String,
        network: String,
    },
    #[error("namespace {namespace} already has an interface named {ifname}; pass --ifname")]
    IfnameTaken { namespace: NsRef, ifname: String },
    #[error("host interface {host_ifname} (derived for namespace {namespace}) already exists")]
    HostIfnameTaken {
        host_ifname: String,
        namespace: NsRef,
    },
    #[error("address {address} is already in use on network {network}{}", .holder.as_ref().map(|h| format!(" by namespace {h}")).unwrap_or_default())]
    AddressInUse {
        address: IpAddr,
        network: String,
        holder: Option<NsRef>,
    },
    #[error("{0}")]
    PoolExhausted(IpamError),
    /// A Linux bridge numbers its ports in 10 bits, 0 reserved.
    #[error("network {network} is full: its bridge holds at most {limit} ports and {count} are attached; use another network")]
    BridgeFull {
        network: String,
        limit: usize,
        count: usize,
    },
    /// The address asked for is the network's gateway: in use by the bridge.
    #[error("{0}")]
    AddressIsGateway(IpamError),
    #[error("no free host port left for {mapping} in 32768-60999")]
    NoFreeHostPort { mapping: PortMapping },
    #[error("published ports {mine} and {theirs} overlap")]
    PortsOverlap {
        mine: PortMapping,
        theirs: PortMapping,
    },
    #[error("host port {}/{} is already published by namespace {namespace} on network {network} ({theirs})", .mapping.protocol, .mapping.host_port)]
    PortTaken {
        mapping: PortMapping,
        namespace: NsRef,
        network: String,
        theirs: PortMapping,
    },
    #[error("published port {mapping} would take the traffic of {listener}, which listens on the host; stop that service, publish another host port, or pass --force")]
    HostPortInUse {
        mapping: PortMapping,
        listener: super::ports::HostListener,
    },
    #[error("{what} exists and was not created by {owner}; remove it or rename it in the file")]
    NotOwnedByFile { what: String, owner: String },
    #[error(
        "namespace {namespace} is connected to network {network} by someone else than {owner}"
    )]
    AttachmentNotOwnedByFile {
        namespace: String,
        network: String,
        owner: String,
    },
    #[error("{path} exists and was not written by nsnet")]
    ForeignFile { path: String },
    // Labs: links, routes, impairment.
    #[error("invalid link end {value:?}: {reason}")]
    InvalidEndpoint { value: String, reason: String },
    #[error("invalid route {value:?}: {reason}")]
    InvalidRoute { value: String, reason: String },
    #[error("link end {end} is given twice")]
    SameEndTwice { end: String },
    #[error("a link has two ends, and {given} addresses were given; pass one --ip per end, in the order of the ends")]
    LinkAddressCount { given: usize },
    #[error("link end {end} is already in use: {by}")]
    EndInUse { end: String, by: String },
    #[error("no link between {a} and {b}")]
    NoSuchLink { a: String, b: String },
    #[error("namespace {namespace} has no route {route} made by nsnet")]
    NoSuchRoute { namespace: String, route: String },
    #[error("namespace {namespace} already has a route to {destination}")]
    RouteExists {
        namespace: String,
        destination: IpNet,
    },
    #[error("namespace {namespace} has no interface {ifname}")]
    NoSuchInterface { namespace: String, ifname: String },
    #[error("{end} is not impaired by nsnet")]
    NotImpaired { end: String },
    #[error("namespace {namespace} is in use by {by}; remove that first")]
    NamespaceInLab { namespace: String, by: String },
    #[error("cannot trace {role} {value}: {reason}")]
    UnknownTraceEnd {
        role: &'static str,
        value: String,
        reason: String,
    },
    #[error("network:{name} cannot be a switch: {name} is {what}")]
    NotASwitch { name: String, what: String },
    #[error("a link between switches {a} and {b} would make a loop ({path}): frames would circle forever, so nsnet refuses it")]
    SwitchLoop { a: String, b: String, path: String },
    #[error("{end} is a port of switch {switch}, and a switch port has no address: give addresses to the namespaces' ends")]
    SwitchPortSetting { end: String, switch: String },
    // Networks on the LAN (drivers macvlan and host-device).
    #[error("{option} is not an option of a {driver} network: it has no bridge, NAT or DNS server of nsnet's; the LAN's router is its gateway")]
    NotForLan {
        option: &'static str,
        driver: &'static str,
    },
    #[error("host interface {ifname} is already used by network {network}")]
    HostInterfaceTaken { ifname: String, network: String },
    #[error("{}", vlan_parent_text(parent, base, *id, *supported))]
    VlanParent {
        parent: String,
        base: String,
        id: u16,
        supported: bool,
    },
    #[error("{}", ipvlan_text(*supported))]
    Ipvlan { supported: bool },
    #[error("host interface {ifname} does not exist (a {driver} network needs one)")]
    NoSuchHostInterface {
        ifname: String,
        driver: &'static str,
    },
    #[error("host interface {ifname} is a {kind}: a {driver} network needs a LAN interface")]
    UnusableHostInterface {
        ifname: String,
        kind: String,
        driver: &'static str,
    },
    #[error("--host-access with --mode {mode}: {}", match mode { super::lan::MacvlanMode::Passthru => "a passthru parent takes one interface only, so the host cannot have one", _ => "the kernel passes nothing between private macvlan interfaces, so the host's could not reach the namespaces" })]
    HostAccessInMode { mode: super::lan::MacvlanMode },
    #[error("--ip-range {range} is not inside the network's --subnet")]
    RangeOutsideSubnet { range: IpNet },
    #[error("--ip-range {start}-{end} is not a CIDR block: a macvlan network's addresses come from CIDR blocks (the smallest that holds this range is {covering})")]
    RangeNotBlock {
        start: String,
        end: String,
        covering: IpNet,
    },
    #[error("no free address in {subnet}: every free address probed is in use on the LAN")]
    LanPoolBusy { subnet: IpNet },
    #[error("address {address} is in use on the LAN of network {network}: {mac} answered for it")]
    AddressOnLan {
        address: IpAddr,
        network: String,
        mac: String,
    },
    #[error("host interface {device} of network {network} is already in namespace {namespace}")]
    DeviceInUse {
        device: String,
        network: String,
        namespace: NsRef,
    },
    #[error("network {network} is a {driver} network: it has no NAT, so it publishes no ports (its namespaces have addresses of the LAN: connect to them directly)")]
    PublishOnLan {
        network: String,
        driver: &'static str,
    },
}

fn vlan_parent_text(parent: &str, base: &str, id: u16, supported: bool) -> String {
    match supported {
        false => format!("parent {parent} is VLAN {id} of {base}, and this kernel has no 802.1q VLAN support (CONFIG_VLAN_8021Q): nsnet cannot make it"),
        true => format!("parent {parent} does not exist: make VLAN {id} on {base} first (nsnet does not make VLAN interfaces)"),
    }
}

fn ipvlan_text(supported: bool) -> String {
    match supported {
        false => "ipvlan networks need the kernel's ipvlan driver (CONFIG_IPVLAN), which this kernel lacks: use --driver macvlan".into(),
        true => "nsnet does not make ipvlan networks: use --driver macvlan".into(),
    }
}

impl Rejection {
    /// `network` is not among `existing`; suggests the closest of them.
    pub fn no_such_network<'a>(
        network: &str,
        existing: impl IntoIterator<Item = &'a String>,
    ) -> Rejection {
        Rejection::NoSuchNetwork {
            network: network.to_string(),
            suggestion: super::names::closest(network, existing),
        }
    }

    pub fn class(&self) -> Class {
        use Rejection::*;
        match self {
            NoSuchNetwork { .. }
            | NoSuchDockerNetwork { .. }
            | NoSuchEndpoint { .. }
            | NoSuchPool { .. }
            | NoSuchNamespace { .. }
            | NotConnected { .. }
            | NoSharedNetwork { .. }
            | NoSuchLink { .. }
            | NoSuchRoute { .. }
            | NoSuchInterface { .. }
            | UnknownTraceEnd { .. }
            | NotImpaired { .. }
            | NoSuchHostInterface { .. } => Class::NotFound,
            NetworkExists { .. }
            | NamespaceExists { .. }
            | BridgeTaken { .. }
            | SubnetOverlap { .. }
            | NoFreeSubnet
            | VniTaken { .. }
            | OverlayConflict { .. }
            | NoFreeHostSubnet { .. }
            | NotABridge { .. }
            | NetworkInUse { .. }
            | NamespaceInUse { .. }
            | AlreadyConnected { .. }
            | CniAttachmentExists { .. }
            | IfnameOnOtherNetwork { .. }
            | IfnameTaken { .. }
            | HostIfnameTaken { .. }
            | AddressInUse { .. }
            | PoolExhausted(_)
            | BridgeFull { .. }
            | AddressIsGateway(_)
            | PortsOverlap { .. }
            | PortTaken { .. }
            | NoFreeHostPort { .. }
            | HostPortInUse { .. }
            | NotOwnedByFile { .. }
            | AttachmentNotOwnedByFile { .. }
            | ForeignFile { .. }
            | EndInUse { .. }
            | RouteExists { .. }
            | NamespaceInLab { .. }
            | NotASwitch { .. }
            | SwitchLoop { .. }
            | HostInterfaceTaken { .. }
            | LanPoolBusy { .. }
            | AddressOnLan { .. }
            | DeviceInUse { .. }
            | OwnedByDocker { .. } => Class::Conflict,
            _ => Class::Invalid,
        }
    }

    pub fn exit_code(&self) -> i32 {
        self.class().exit_code()
    }
}

/// Parses a CIDR, insisting on a network address so that a typo such as
/// `172.16.1.0/16` is caught instead of silently widened.
pub fn parse_subnet(s: &str) -> Result<IpNet, Rejection> {
    let net: IpNet = s.parse().map_err(|_| Rejection::Unparsable {
        what: "subnet",
        value: s.to_string(),
        expected: "expected CIDR notation such as 172.16.0.0/16 or fd00::/64",
    })?;
    if net.trunc() != net {
        return Err(Rejection::HostBitsSet {
            value: s.to_string(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

/// Parses an address; `what` names it in the error ("gateway").
pub fn parse_ip(s: &str, what: &'static str) -> Result<IpAddr, Rejection> {
    s.parse().map_err(|_| Rejection::Unparsable {
        what,
        value: s.to_string(),
        expected: "not an IPv4 or IPv6 address",
    })
}

/// An address asked for an attachment, with the prefix if one was given
/// (it must then be the subnet's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedIp {
    pub addr: IpAddr,
    pub prefix: Option<u8>,
}

impl std::fmt::Display for RequestedIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl std::str::FromStr for RequestedIp {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<RequestedIp, Rejection> {
        if let Ok(n) = s.parse::<IpNet>() {
            return Ok(RequestedIp {
                addr: n.addr(),
                prefix: Some(n.prefix_len()),
            });
        }
        let addr = s.parse::<IpAddr>().map_err(|_| Rejection::Unparsable {
            what: "address",
            value: s.to_string(),
            expected: "expected an address like 172.16.1.1 or 172.16.1.1/16",
        })?;
        Ok(RequestedIp { addr, prefix: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_contract() {
        let cases: Vec<(Rejection, i32)> = vec![
            (parse_subnet("10.0.0.0/33").unwrap_err(), 2),
            (parse_subnet("172.16.1.0/16").unwrap_err(), 2),
            (Rejection::no_such_network("x", &[]), 3),
            (Rejection::NoFreeSubnet, 4),
        ];
        for (r, code) in cases {
            assert_eq!(r.exit_code(), code, "{r}");
        }
        assert!(parse_subnet("172.16.1.0/16")
            .unwrap_err()
            .to_string()
            .contains("did you mean 172.16.0.0/16"));
    }

    #[test]
    fn requested_addresses_keep_their_prefix() {
        let r: RequestedIp = "10.0.0.2/24".parse().unwrap();
        assert_eq!(r.prefix, Some(24));
        let r: RequestedIp = "10.0.0.2".parse().unwrap();
        assert_eq!(r.prefix, None);
        let e = "nope".parse::<RequestedIp>().unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}

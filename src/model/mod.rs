//! The one model every front end (command line, topology file, CNI) works
//! on: networks and their attachments as recorded, the typed requests that
//! change them, and the values they are made of (names, namespaces, ports,
//! subnets and leases). Pure: no syscalls, no I/O; imports nothing else of
//! the crate.

pub mod attachments;
pub mod delta;
pub mod docker;
pub mod gateway;
pub mod graph;
pub mod ipam;
pub mod lab;
pub mod lan;
pub mod names;
pub mod nsref;
pub mod overlay;
pub mod ports;
pub mod rejection;
pub mod request;
pub mod resolv_confs;
pub mod sysctl;
pub mod topology;

pub use attachments::Attachments;
pub use gateway::GatewayMode;
pub use nsref::NsRef;
pub use rejection::{Class, Rejection, RequestedIp};
pub use request::{ConnectRequest, CreateRequest, DEFAULT_IFNAME};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use ipam::Subnet;

/// Everything nsnet has made and must be able to undo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub networks: BTreeMap<String, Network>,
    /// Sysctls nsnet changed in its own namespace, with the value they had
    /// before, so the last network's removal restores them.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// `/etc/netns/NAME/resolv.conf` files nsnet wrote, by namespace name.
    /// Most namespaces share their content with others (those of the same
    /// networks): shared in memory, recorded once per content on disk.
    #[serde(default)]
    pub resolv_confs: resolv_confs::ResolvConfs,
    /// Point-to-point links between namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<lab::Link>,
    /// Namespaces that links, forwarding or routes made or configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lab_namespaces: BTreeMap<String, lab::LabNamespace>,
    /// netem qdiscs nsnet put on interfaces.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub impairments: lab::Impairments,
    /// Address pools Docker's IPAM asked nsnet for, by ID (their CIDR).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub docker_pools: BTreeMap<String, docker::Pool>,
    /// The store's bookkeeping: how many changes this record has folded
    /// in (its change log holds the later ones).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// 2: resolv.conf contents recorded once each, with their namespaces
/// (see `resolv_groups`). 3: the record is JSON lines, one per attachment
/// (see `store::record`). Records of earlier versions are read and
/// written back in today's form.
pub const STATE_VERSION: u32 = 3;

/// The search domain of networks that do not name one.
pub const DEFAULT_DNS_DOMAIN: &str = "nsnet.internal";

/// A per-namespace resolv.conf (the iproute2 convention: `ip netns exec`
/// bind-mounts `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvConf {
    pub servers: Vec<IpAddr>,
    /// The topology file that asked for it, or `DNS_OWNER` for the
    /// nameservers of the namespace's DNS networks.
    pub owner: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

/// The owner of resolv.conf files that point a namespace at nsnet's DNS
/// server (a topology file's own `dns` takes precedence).
pub const DNS_OWNER: &str = "nsnet network DNS";

fn yes() -> bool {
    true
}

/// A command's intent, written before it touches the kernel: the change
/// from the recorded state (which is the state before, until the command
/// records the state after). nsnet 0.1 wrote both whole states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Journal {
    Change { change: delta::StateDelta },
    Whole { before: State, after: State },
}

impl Journal {
    /// The states before and after, given the recorded one.
    pub fn states(self, recorded: &State) -> (State, State) {
        match self {
            Journal::Change { change } => (recorded.clone(), delta::apply(recorded, &change)),
            Journal::Whole { before, after } => (before, after),
        }
    }
}

/// A bridge plus subnets and options; or, for a network on the LAN
/// (`lan`), the host interface it is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub bridge: String,
    /// The bridge existed before this network: `rm` leaves it in place.
    pub bridge_adopted: bool,
    /// The adopted bridge was down and nsnet brought it up: `rm` puts it
    /// back down.
    #[serde(default)]
    pub bridge_brought_up: bool,
    pub bridge_mac: String,
    pub subnets: Vec<Subnet>,
    /// Gateway addresses that the adopted bridge already had: not ours to
    /// remove.
    #[serde(default)]
    pub preexisting_gateways: Vec<IpAddr>,
    /// Sysctls of an adopted bridge that nsnet changed, with their old
    /// values, put back by `rm`.
    #[serde(default)]
    pub bridge_sysctls: BTreeMap<String, String>,
    pub internal: bool,
    /// Whether IPv4 traffic leaving the host is masqueraded (kept for
    /// records of nsnet 0.1; `gateway_mode` decides).
    pub masquerade: bool,
    /// How the network meets the outside, for IPv4 and for IPv6.
    #[serde(default)]
    pub gateway_mode: GatewayMode,
    #[serde(default)]
    pub gateway_mode_v6: GatewayMode,
    /// Namespaces of this network may talk to each other (Docker's ICC).
    #[serde(default = "yes")]
    pub icc: bool,
    /// Host interfaces whose traffic is exempt from direct-access
    /// protection (Docker's `trusted_host_interfaces`).
    #[serde(default)]
    pub trusted_interfaces: Vec<String>,
    pub isolate: bool,
    pub mtu: Option<u32>,
    /// Link group of this network's host-side veths (for batched deletion).
    pub link_group: u32,
    /// Shared, not copied, between the states before and after a command
    /// (copying a state, or comparing two, costs a pointer per attachment),
    /// and decoded from the record when first used (see `attachments`).
    /// The record keeps them as lines of their own, out of its head.
    #[serde(default, skip_serializing_if = "Attachments::is_empty")]
    pub attachments: Attachments,
    /// The topology file whose `up` created it; none for the command line.
    #[serde(default)]
    pub owner: Option<String>,
    /// Names of the network's namespaces resolve for its members (nsnet's
    /// DNS server answers on the gateway addresses).
    #[serde(default = "yes")]
    pub dns: bool,
    /// The search domain (default `nsnet.internal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
    /// Where other names are forwarded (default: the host's resolv.conf).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<IpAddr>,
    /// This host's part of a network that spans hosts (driver `overlay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<overlay::Overlay>,
    /// Docker made it (`docker network create -d nsnet`): its network ID
    /// and the endpoints Docker created on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<docker::DockerNetwork>,
    /// netavark (podman) made it at a container's setup: its podman
    /// network ID. It goes with its last attachment (podman's `network
    /// rm` calls no plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netavark: Option<String>,
    /// A network on the host's LAN (drivers `macvlan` and `host-device`):
    /// it has no bridge (`bridge` is empty), no NAT and no rules of
    /// nsnet's firewall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan: Option<lan::Lan>,
}

/// One veth pair joining a namespace to a network. (`Eq`: two shared
/// attachments compare equal at once when they are the same allocation.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub namespace: NsRef,
    /// nsnet created the namespace for this attachment and removes it with
    /// the attachment's last network.
    pub namespace_created: bool,
    pub host_ifname: String,
    pub ifname: String,
    // Empty fields are left out of the record, which holds one of these
    // per attachment: every command reads and writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub addresses: Vec<IpNet>,
    /// Host ports published to this attachment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ports::PortMapping>,
    /// The topology file whose `up` created it; none for the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The CNI attachment this is, when a container runtime made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniKey>,
    /// More names of the namespace on this network (DNS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The Docker endpoint this is (its ID), when Docker made it: the
    /// namespace end was handed to Docker, which moves it into the
    /// container and gives it its addresses and routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<String>,
    /// The host interface moved into the namespace (driver `host-device`),
    /// as it was in the host: what its return puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<lan::SavedDevice>,
}

/// How a CNI runtime names an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniKey {
    pub container_id: String,
    pub ifname: String,
}

/// The kind of a network, which picks the driver that plans its devices
/// (`plan::driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// A bridge on this host.
    Bridge,
    /// A bridge on this host's part of a network across hosts, and a
    /// VXLAN device to the others.
    Overlay,
    /// Interfaces of their own on a host interface on the LAN.
    Macvlan,
    /// A host interface moved into the namespace.
    HostDevice,
}

impl Network {
    /// The driver of this network.
    pub fn driver(&self) -> DriverKind {
        match (&self.overlay, &self.lan) {
            (Some(_), _) => DriverKind::Overlay,
            (None, Some(lan::Lan::Macvlan(_))) => DriverKind::Macvlan,
            (None, Some(lan::Lan::HostDevice(_))) => DriverKind::HostDevice,
            (None, None) => DriverKind::Bridge,
        }
    }

    /// Whether the network has a bridge on this host (every driver but
    /// the LAN ones): its firewall rules, gateway addresses, DNS server.
    pub fn has_bridge(&self) -> bool {
        self.lan.is_none()
    }

    /// The macvlan settings of a macvlan network.
    pub fn macvlan(&self) -> Option<&lan::Macvlan> {
        self.lan.as_ref().and_then(lan::Lan::macvlan)
    }

    pub fn attachment(&self, ns: &NsRef) -> Option<&Attachment> {
        self.attachments.of_namespace(ns).next().map(Arc::as_ref)
    }

    /// The attachment a container runtime made under `key`.
    pub fn cni_attachment(&self, key: &CniKey) -> Option<&Attachment> {
        self.attachments.of_cni(key).map(Arc::as_ref)
    }

    /// Whether Docker's IPAM pool `pool` hands out this network's
    /// addresses: a pool of its subnet, or of its overlay's cluster subnet
    /// (this host's part is then what it hands out).
    pub fn served_by(&self, pool: &docker::Pool) -> bool {
        self.subnets.iter().any(|s| s.cidr == pool.cidr)
            || self
                .overlay
                .as_ref()
                .is_some_and(|o| IpNet::V4(o.config.subnet) == pool.cidr)
    }

    /// Addresses leased on this network, gateways included.
    pub fn used_addresses(&self) -> ipam::Leases {
        let mut used = self.attachments.addresses();
        used.extend(self.subnets.iter().map(|s| s.gateway));
        // The host's own interface on a macvlan network.
        if let Some(h) = self.macvlan().and_then(|m| m.host_access.as_ref()) {
            used.extend(h.addresses.iter().map(IpNet::addr));
        }
        // Docker's endpoints hold theirs from CreateEndpoint on.
        if let Some(d) = &self.docker {
            used.extend(
                d.endpoints
                    .values()
                    .flat_map(|e| e.addresses.iter().map(IpNet::addr)),
            );
        }
        used.into_iter().collect()
    }

    pub fn subnet_v4(&self) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.cidr.addr().is_ipv4())
    }

    pub fn subnet_v6(&self) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.cidr.addr().is_ipv6())
    }

    /// Whether traffic may leave this network through the host's routing.
    pub fn forwards(&self) -> bool {
        !self.internal && self.has_bridge()
    }

    /// Whether two records describe the same network but for their
    /// attachments. (The destructuring makes a new field a compile error
    /// here until it is compared.)
    pub fn same_settings(&self, other: &Network) -> bool {
        let Network {
            name,
            bridge,
            bridge_adopted,
            bridge_brought_up,
            bridge_mac,
            subnets,
            preexisting_gateways,
            bridge_sysctls,
            internal,
            masquerade,
            gateway_mode,
            gateway_mode_v6,
            icc,
            trusted_interfaces,
            isolate,
            mtu,
            link_group,
            attachments: _,
            owner,
            dns,
            dns_domain,
            dns_servers,
            overlay,
            docker,
            netavark,
            lan,
        } = self;
        *name == other.name
            && *bridge == other.bridge
            && *bridge_adopted == other.bridge_adopted
            && *bridge_brought_up == other.bridge_brought_up
            && *bridge_mac == other.bridge_mac
            && *subnets == other.subnets
            && *preexisting_gateways == other.preexisting_gateways
            && *bridge_sysctls == other.bridge_sysctls
            && *internal == other.internal
            && *masquerade == other.masquerade
            && *gateway_mode == other.gateway_mode
            && *gateway_mode_v6 == other.gateway_mode_v6
            && *icc == other.icc
            && *trusted_interfaces == other.trusted_interfaces
            && *isolate == other.isolate
            && *mtu == other.mtu
            && *link_group == other.link_group
            && *owner == other.owner
            && *docker == other.docker
            && *netavark == other.netavark
            && *lan == other.lan
            && *overlay == other.overlay
            && *dns == other.dns
            && *dns_domain == other.dns_domain
            && *dns_servers == other.dns_servers
    }

    /// The DNS search domain of the network.
    pub fn domain(&self) -> &str {
        self.dns_domain.as_deref().unwrap_or(DEFAULT_DNS_DOMAIN)
    }

    /// The gateway mode of one family.
    pub fn mode(&self, v4: bool) -> GatewayMode {
        if v4 {
            self.gateway_mode
        } else {
            self.gateway_mode_v6
        }
    }

    /// Whether traffic of that family leaving the host is masqueraded.
    pub fn masquerades(&self, v4: bool) -> bool {
        self.forwards() && self.mode(v4).masquerades()
    }

    /// Whether the bridge carries gateway addresses.
    pub fn has_gateway_addresses(&self) -> bool {
        self.has_bridge() && !(self.internal && self.gateway_mode == GatewayMode::Isolated)
    }

    /// Where nsnet's DNS server answers this network's namespaces: its
    /// gateways, or on a macvlan network the host's own addresses on the
    /// LAN (`--host-access`); none when DNS is off or there is no address
    /// of the host's to answer on.
    pub fn dns_addresses(&self) -> Vec<IpAddr> {
        if !self.dns {
            return Vec::new();
        }
        match self.macvlan().and_then(|m| m.host_access.as_ref()) {
            Some(h) => h.addresses.iter().map(IpNet::addr).collect(),
            None if self.has_gateway_addresses() => {
                self.subnets.iter().map(|s| s.gateway).collect()
            }
            None => Vec::new(),
        }
    }
}

impl State {
    /// The bridges of the networks that have one.
    pub fn bridges(&self) -> Vec<&str> {
        self.networks
            .values()
            .filter(|n| n.has_bridge())
            .map(|n| n.bridge.as_str())
            .collect()
    }

    /// The state without its networks on the LAN: what nsnet's firewall
    /// table is made from (they have no rules). Borrowed when there are
    /// none, as on most hosts.
    pub fn bridged(&self) -> std::borrow::Cow<'_, State> {
        if self.networks.values().all(Network::has_bridge) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut s = self.clone();
        s.networks.retain(|_, n| n.has_bridge());
        std::borrow::Cow::Owned(s)
    }

    /// Nothing recorded: no file needs to exist.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.sysctls.is_empty()
            && self.resolv_confs.is_empty()
            && self.links.is_empty()
            && self.lab_namespaces.is_empty()
            && self.impairments.is_empty()
            && self.docker_pools.is_empty()
    }

    /// The address of `to` on a network it shares with `from` (IPv4 first,
    /// then IPv6), so that one namespace can be pinged by name from the
    /// other.
    pub fn address_between(&self, from: &NsRef, to: &NsRef) -> Option<IpAddr> {
        let mut found: Vec<IpAddr> = self
            .networks
            .values()
            .filter(|n| n.attachment(from).is_some())
            .filter_map(|n| n.attachment(to))
            .flat_map(|a| a.addresses.iter().map(|x| x.addr()))
            .collect();
        found.sort_by_key(|a| a.is_ipv6());
        found.first().copied()
    }

    /// Other attachments of a namespace, on any network.
    pub fn attachments_of<'a>(
        &'a self,
        ns: &'a NsRef,
    ) -> impl Iterator<Item = (&'a Network, &'a Attachment)> {
        self.networks
            .values()
            .flat_map(move |n| n.attachments.of_namespace(ns).map(move |a| (n, a.as_ref())))
    }

    /// Removes the attachment of `ns` to `network`. Returns true when the
    /// namespace should be deleted now: nsnet created it and no other
    /// attachment uses it. While others remain, the duty to delete it
    /// passes to one of them.
    pub fn detach(&mut self, network: &str, ns: &NsRef) -> bool {
        let Some(net) = self.networks.get_mut(network) else {
            return false;
        };
        let Some(pos) = net.attachments.position(ns) else {
            return false;
        };
        let att = net.attachments.remove(pos);
        if !att.namespace_created {
            return false;
        }
        let heir = self
            .networks
            .values_mut()
            .find_map(|n| n.attachments.of_namespace_mut(ns));
        match heir {
            Some(a) => {
                Arc::make_mut(a).namespace_created = true;
                false
            }
            // Links, routes or forwarding still use it: their record
            // inherits the duty.
            None => match ns.name().and_then(|n| self.lab_namespaces.get_mut(n)) {
                Some(lab) => {
                    lab.created = true;
                    false
                }
                None => ns.name().is_some(),
            },
        }
    }

    /// A link group no network uses yet, derived from the name so that it is
    /// stable; groups 0 (the default) and small numbers are avoided because
    /// other tools use them. Bit 30 is always set, so it is never
    /// `PARKED_LINK_GROUP`.
    pub fn free_link_group(&self, name: &str) -> u32 {
        let used: BTreeSet<u32> = self.networks.values().map(|n| n.link_group).collect();
        let mut g = names::stable_hash(&[name, "group"]) | 0x4000_0000;
        while used.contains(&g) {
            g = g.wrapping_add(1) | 0x4000_0000;
        }
        g
    }
}

/// The link group of host veths whose namespace a disconnect deleted: the
/// kernel destroys each pair with its namespace, asynchronously, and until
/// then this group marks the host end as going (a re-connect of the same
/// name deletes it first). Moving a link to a group costs no RCU grace
/// period; taking it down or off its bridge costs one each.
pub const PARKED_LINK_GROUP: u32 = 0x3fff_fffe;

/// A plain network for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_network(name: &str, bridge: &str, subnets: &[&str]) -> Network {
    Network {
        name: name.into(),
        bridge: bridge.into(),
        bridge_adopted: false,
        bridge_brought_up: false,
        bridge_mac: "02:00:00:00:00:01".into(),
        subnets: subnets
            .iter()
            .map(|s| {
                let cidr: IpNet = s.parse().expect("valid test subnet");
                Subnet {
                    cidr,
                    gateway: ipam::default_gateway(&cidr).expect("room for a gateway"),
                }
            })
            .collect(),
        preexisting_gateways: vec![],
        bridge_sysctls: BTreeMap::new(),
        internal: false,
        masquerade: true,
        gateway_mode: GatewayMode::Nat,
        gateway_mode_v6: GatewayMode::Nat,
        icc: true,
        trusted_interfaces: vec![],
        isolate: true,
        mtu: None,
        link_group: 1,
        attachments: Default::default(),
        owner: None,
        dns: true,
        dns_domain: None,
        dns_servers: vec![],
        overlay: None,
        docker: None,
        netavark: None,
        lan: None,
    }
}

/// An attachment of namespace `ns` (created by nsnet, `ve-NS` on the host,
/// `eth0` inside, no addresses or ports), for unit tests elsewhere.
#[cfg(test)]
pub(crate) fn test_attachment(ns: &str) -> Attachment {
    Attachment {
        namespace: NsRef::Named(ns.to_string()),
        namespace_created: true,
        host_ifname: format!("ve-{ns}"),
        ifname: "eth0".into(),
        mac: None,
        addresses: vec![],
        ports: vec![],
        owner: None,
        cni: None,
        aliases: vec![],
        docker: None,
        device: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, atts: &[(&str, bool)]) -> Network {
        Network {
            attachments: atts
                .iter()
                .map(|(ns, created)| {
                    Arc::new(Attachment {
                        namespace_created: *created,
                        ..test_attachment(ns)
                    })
                })
                .collect(),
            ..test_network(name, name, &[])
        }
    }

    #[test]
    fn a_created_namespace_goes_with_its_last_attachment_whatever_the_order() {
        let ns = NsRef::Named("multi".into());
        let mut s = State::default();
        s.networks.insert("a".into(), net("a", &[("multi", true)]));
        s.networks.insert("b".into(), net("b", &[("multi", false)]));
        assert!(!s.detach("a", &ns), "b still uses it");
        assert!(s.detach("b", &ns), "b inherited the duty to delete it");

        let mut s = State::default();
        s.networks.insert("a".into(), net("a", &[("multi", true)]));
        s.networks.insert("b".into(), net("b", &[("multi", false)]));
        assert!(!s.detach("b", &ns));
        assert!(s.detach("a", &ns));
    }

    #[test]
    fn foreign_namespaces_are_never_deleted() {
        let ns = NsRef::Named("pre".into());
        let mut s = State::default();
        s.networks.insert("a".into(), net("a", &[("pre", false)]));
        assert!(!s.detach("a", &ns));
    }
}

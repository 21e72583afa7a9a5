//! Read-only questions to the machine, behind one small trait: `Live`
//! asks the kernel and the firewall backend with the sockets it applies
//! plans with; `fake::FakeProbe` answers from tables a test fills in, so
//! that fact gathering, `check` and CNI CHECK/STATUS are unit-tested
//! without root.

use serde_json::Value;

use super::Error;
use crate::kernel::netlink::{AddressInfo, LinkInfo, RouteInfo};
use crate::model::ports::{HostListener, Protocol};
use crate::model::{NsRef, State};
use crate::plan::Target;

pub type Result<T> = std::result::Result<T, Error>;

/// What a namespace reference leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsState {
    Missing,
    /// The namespace nsnet runs in, where its bridges are.
    Host,
    Other,
}

pub trait Probe {
    /// Whether the namespace exists, and whether it is the host's: one
    /// open of the namespace.
    fn namespace_state(&mut self, ns: &NsRef) -> Result<NsState>;
    /// Whether the namespace exists (and is one).
    fn namespace_exists(&mut self, ns: &NsRef) -> Result<bool> {
        Ok(self.namespace_state(ns)? != NsState::Missing)
    }
    fn links(&mut self, target: &Target) -> Result<Vec<LinkInfo>>;
    /// One link by name: cheaper than `links` on a host with many.
    fn link(&mut self, target: &Target, name: &str) -> Result<Option<LinkInfo>>;
    fn addresses(&mut self, target: &Target) -> Result<Vec<AddressInfo>>;
    fn routes(&mut self, target: &Target) -> Result<Vec<RouteInfo>>;
    /// The routes of one family (IPv4 when `v4`).
    fn routes_of_family(&mut self, target: &Target, v4: bool) -> Result<Vec<RouteInfo>> {
        Ok(self
            .routes(target)?
            .into_iter()
            .filter(|r| r.destination.addr().is_ipv4() == v4)
            .collect())
    }
    /// The impairment (netem or tbf root qdisc) of an interface, if any.
    fn impairment(
        &mut self,
        target: &Target,
        ifname: &str,
    ) -> Result<Option<crate::model::lab::Impairment>>;
    /// A sysctl of nsnet's own namespace; `None` where it does not exist.
    fn sysctl(&mut self, key: &str) -> Option<String>;
    /// The settings of host interface `ifname` that a move to another
    /// namespace loses (see `kernel::sysctl::device_settings`).
    fn device_sysctls(&mut self, ifname: &str) -> std::collections::BTreeMap<String, String>;
    /// nsnet's firewall table as nft lists it; `None` when it is missing.
    fn firewall_table(&mut self) -> Result<Option<Value>>;
    /// Whether the live table has the rules `state` calls for.
    fn firewall_intact(&mut self, state: &State) -> Result<bool>;
    /// The peers overlay network `vni`'s VXLAN guard lets through, and
    /// whether its drop rule is there; `None` when it has no set.
    fn vxlan_guard(&mut self, vni: u32) -> Result<Option<(Vec<std::net::Ipv4Addr>, bool)>>;
    /// nsnet's rules in Docker's DOCKER-USER chain (ip6tables' for `v6`);
    /// `None` where there is no such chain.
    fn docker_forward(&mut self, v6: bool) -> Result<Option<crate::firewall::docker_user::Placed>>;
    /// Other tables' forward chains whose policy is drop.
    fn foreign_forward_drops(&mut self) -> Result<Vec<crate::firewall::rules::ForeignDrop>>;
    /// Whether a file exists (a resolv.conf nsnet is about to write).
    fn file_exists(&mut self, path: &std::path::Path) -> bool;
    /// The host's sockets listening for `protocol`.
    fn host_listeners(&mut self, protocol: Protocol) -> Result<Vec<HostListener>>;
    /// `name[pid]` of a process holding the socket `inode`.
    fn socket_holder(&mut self, inode: u32) -> Option<String>;
    /// The address this host sends from towards `dest` (the kernel's
    /// route lookup, through a connected UDP socket: nothing is sent).
    fn source_towards(&mut self, dest: std::net::SocketAddr) -> std::io::Result<std::net::IpAddr>;
    /// The named namespaces (iproute2's, under /run/netns).
    fn namespaces(&mut self) -> Result<Vec<String>>;
    /// Every bridge port of the host, in one dump.
    fn bridge_ports(&mut self) -> Result<Vec<LinkInfo>>;
    /// The peers programmed on a VXLAN device (none when it is gone).
    fn peers(&mut self, vxlan: &str) -> Result<Vec<crate::model::overlay::Peer>>;
    /// The kernel's route from `target` to `dst` (`ip route get`); `None`
    /// when it has none.
    fn route_get(
        &mut self,
        target: &Target,
        dst: std::net::IpAddr,
    ) -> Result<Option<crate::kernel::netlink::RouteLookup>>;
    /// Who on the LAN of host interface `ifname` answers duplicate address
    /// probes for `addrs` (ARP for IPv4, Neighbour Solicitations for
    /// IPv6), within `wait`.
    fn lan_probe(
        &mut self,
        ifname: &str,
        addrs: &[std::net::IpAddr],
        wait: std::time::Duration,
    ) -> Result<Vec<crate::model::lan::LanHolder>>;
    /// Whether the kernel knows links of `kind` (`ipvlan`, `vlan`).
    fn kind_supported(&mut self, kind: &str) -> Result<bool>;
    /// Every table's chains, rules and sets, as `nft -j list ruleset`.
    fn ruleset(&mut self) -> Result<Value>;
    /// Whether a socket in `target` listens on `port` (TCP) or is bound
    /// to it (UDP), on any address.
    fn listening(&mut self, target: &Target, protocol: Protocol, port: u16) -> Result<bool>;
    /// Each link's name and byte counters (received, sent) in `target`.
    fn counters(&mut self, target: &Target) -> Result<Vec<(String, u64, u64)>>;
    /// Sends one real packet from `ns` (`None`: the host) to `dst`, with
    /// a trace rule for it in the host (gone with the call, or with the
    /// process): what came back, and the host's trace events for it.
    fn send_probe(
        &mut self,
        ns: Option<&NsRef>,
        src: std::net::IpAddr,
        dst: std::net::SocketAddr,
        l4proto: u8,
    ) -> Result<(
        crate::kernel::nftrace::Outcome,
        Vec<crate::kernel::nftrace::Event>,
    )>;
}

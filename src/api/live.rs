//! What the command line asks of the machine outside the record: the
//! namespaces, the bridge ports `show` lists, the demo's upstream (through
//! the `Machine`); and what a process does to itself: ping from a
//! namespace, enter one to run a command, the demo's sandbox, the detached
//! reaper of parked links. Front ends reach the kernel only through these
//! and `Nsnet`.

use std::os::fd::AsFd;

use super::Result;
use crate::kernel::{netns, sandbox};
use crate::model::overlay::Peer;
use crate::model::{names, NsRef, State};
use crate::plan::{Op, Target};

pub use crate::kernel::capture::{
    compile_filter, file_header, record as pcap_record, Capture, Options as CaptureOptions, Packet,
    LINKTYPE_ETHERNET, SNAPLEN,
};
pub use crate::kernel::netlink::LinkInfo;
pub use crate::kernel::ping::{ping, Options as PingOptions, Reply, Summary, PAYLOAD};
pub use crate::kernel::{name_process, stop_on};
pub use crate::store::DEFAULT_DIR as DEFAULT_STATE_DIR;

impl super::Nsnet {
    /// The named namespaces (iproute2's, under /run/netns).
    pub fn namespaces(&self) -> Result<Vec<String>> {
        Ok(self.host().namespaces()?)
    }

    /// Whether `ns` leads to a network namespace.
    pub fn namespace_exists(&self, ns: &NsRef) -> bool {
        matches!(self.host().namespace_exists(ns), Ok(true))
    }
}

/// Moves this single-threaded process into `ns`, about to exec there.
pub fn enter_for_exec(ns: &NsRef) -> Result<()> {
    let fd = netns::open(ns)?;
    netns::enter_for_exec(&fd.as_fd(), &ns.to_string())?;
    Ok(())
}

/// `nsnet reap-parked`: deletes the named host links still parked.
pub fn reap_parked(names: &[String]) {
    crate::host::reap_parked(names);
}

/// Host links read live, to show what the kernel has: sorted by name and
/// looked up by binary search on the name as a number (a thousand ports:
/// no map to build, no name copied, no string compared).
#[derive(Default)]
pub struct LivePorts {
    links: Vec<(u128, LinkInfo)>,
    /// The peers programmed for each overlay network, by its name.
    peers: std::collections::BTreeMap<String, Vec<Peer>>,
}

/// An interface name as a number that sorts as the name does: the kernel's
/// names have at most 15 bytes, so its bytes, zero-padded, make the
/// number's big-endian bytes. (`None`: not an interface name.)
fn name_key(name: &str) -> Option<u128> {
    let mut key = [0u8; 16];
    key.get_mut(..name.len())?.copy_from_slice(name.as_bytes());
    Some(u128::from_be_bytes(key))
}

impl LivePorts {
    fn new(links: Vec<LinkInfo>) -> LivePorts {
        let mut live = LivePorts::default();
        live.extend(links);
        live
    }

    fn extend(&mut self, links: impl IntoIterator<Item = LinkInfo>) {
        let keyed = links
            .into_iter()
            .filter_map(|l| Some((name_key(&l.name)?, l)));
        self.links.extend(keyed);
        self.links.sort_unstable_by_key(|(key, _)| *key);
    }

    pub fn get(&self, name: &str) -> Option<&LinkInfo> {
        let key = name_key(name)?;
        self.links
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| &self.links[i].1)
    }

    /// The peers programmed for the overlay network `network`.
    pub fn peers_of(&self, network: &str) -> &[Peer] {
        self.peers.get(network).map_or(&[], Vec::as_slice)
    }

    /// The ports of the bridge whose index is `bridge`, by name.
    pub fn ports_of(&self, bridge: u32) -> impl Iterator<Item = &LinkInfo> {
        self.links
            .iter()
            .map(|(_, l)| l)
            .filter(move |l| l.master == Some(bridge))
    }
}

impl super::Nsnet {
    /// The host's links as `show` lists them: every bridge port in one
    /// bridge-port dump (not a dump of every link, which costs the kernel a
    /// lookup per veth that grows with the number of namespaces), then, one
    /// by one, the networks' bridges and the host ends the dump lacks (a
    /// host end taken off every bridge is there, not missing); and the peers
    /// programmed for each overlay network.
    pub fn live_ports(&self, state: &State) -> Result<LivePorts> {
        let mut host = self.host();
        let mut live = LivePorts::new(host.bridge_ports()?);
        let mut missing: Vec<String> = Vec::new();
        for net in state.networks.values().filter(|n| n.has_bridge()) {
            if live.get(&net.bridge).is_none() {
                missing.push(net.bridge.clone());
            }
            for a in net.attachments.summaries() {
                if live.get(a.host_ifname()).is_none() {
                    missing.push(a.host_ifname().to_owned());
                }
            }
            if let Some(o) = &net.overlay {
                live.peers.insert(net.name.clone(), host.peers(&o.vxlan)?);
            }
        }
        // A name recorded twice is looked up once.
        missing.sort_unstable();
        missing.dedup();
        let mut found = Vec::new();
        for name in &missing {
            found.extend(host.link(&Target::Host, name)?);
        }
        live.extend(found);
        Ok(live)
    }
}

/// Moves the whole process into a private network and mount namespace (the
/// demo's sandbox; no other thread may exist yet).
pub fn enter_sandbox() -> Result<()> {
    Ok(sandbox::enter()?)
}

/// `enter_sandbox`, in a PID namespace of its own: the process forks, the
/// parent waits and exits with the child's status; the child returns.
/// Nothing the child starts outlives it. Call it before any thread starts.
pub fn enter_sandbox_alone() -> Result<()> {
    Ok(sandbox::enter_alone()?)
}

impl super::Nsnet {
    /// The demo's simulated upstream network: namespace `ns` at `addr`/24
    /// with no route back to the bridges' subnets, linked to the sandbox's
    /// root namespace through the bridge `uplink` (`host_addr`/24), which
    /// uses it as default route. Not recorded: the sandbox goes as a whole.
    pub fn make_upstream(
        &self,
        ns: &str,
        addr: std::net::Ipv4Addr,
        host_addr: std::net::Ipv4Addr,
    ) -> Result<()> {
        let up = Target::Ns(NsRef::Named(ns.into()));
        let ops = [
            Op::LinkUp {
                target: Target::Host,
                ifname: "lo".into(),
            },
            Op::CreateNetns { name: ns.into() },
            Op::CreateBridge {
                name: "uplink".into(),
                mac: names::derived_mac(&["uplink"]),
                mtu: None,
                group: None,
            },
            Op::LinkUp {
                target: Target::Host,
                ifname: "uplink".into(),
            },
            Op::AddAddress {
                target: Target::Host,
                ifname: "uplink".into(),
                addr: ipnet::Ipv4Net::new(host_addr, 24).expect("valid").into(),
            },
            Op::CreateVeth {
                host: "up0".into(),
                peer: "eth0".into(),
                netns: NsRef::Named(ns.into()),
                bridge: "uplink".into(),
                mtu: None,
                mac: None,
                group: 0,
                ipv6: true,
                handed: false,
            },
            Op::AddAddress {
                target: up.clone(),
                ifname: "eth0".into(),
                addr: ipnet::Ipv4Net::new(addr, 24).expect("valid").into(),
            },
            Op::LinkUp {
                target: up.clone(),
                ifname: "eth0".into(),
            },
            Op::LinkUp {
                target: up,
                ifname: "lo".into(),
            },
            Op::AddDefaultRoute {
                target: Target::Host,
                ifname: "uplink".into(),
                gateway: addr.into(),
            },
        ];
        crate::apply::apply(&ops, &mut *self.host())?;
        Ok(())
    }
}

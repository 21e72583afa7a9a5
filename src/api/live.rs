//! What the command line does on the live machine outside the record:
//! ping from a namespace, enter one to run a command, list namespaces,
//! read bridge ports for `show`, the demo's sandbox and upstream, and the
//! detached reaper of parked links. Front ends reach the kernel only
//! through these and `Nsnet`.

use std::os::fd::AsFd;

use super::Result;
use crate::kernel::netlink::Handle;
use crate::kernel::{netns, sandbox};
use crate::model::{names, NsRef, State};
use crate::plan::{Op, Target};

pub use crate::kernel::netlink::LinkInfo;
pub use crate::kernel::ping::{ping, Options as PingOptions, Reply, Summary, PAYLOAD};
pub use crate::kernel::{name_process, stop_on};
pub use crate::store::DEFAULT_DIR as DEFAULT_STATE_DIR;

/// The named namespaces (iproute2's, under /run/netns).
pub fn namespaces() -> Result<Vec<String>> {
    Ok(netns::list()?)
}

/// Whether `ns` leads to a network namespace.
pub fn namespace_exists(ns: &NsRef) -> bool {
    netns::exists(ns)
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

/// Every bridge port in one bridge-port dump (not a dump of every link,
/// which costs the kernel a lookup per veth that grows with the number of
/// namespaces), then, one by one, the networks' bridges and the host ends
/// the dump lacks: a host end taken off every bridge is there, not missing.
pub fn bridge_ports(state: &State) -> Result<Vec<LinkInfo>> {
    let mut h = Handle::open()?;
    let mut links = h.bridge_ports()?;
    let mut dumped: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    dumped.sort_unstable();
    let mut missing: Vec<String> = Vec::new();
    let mut want = |name: &str| {
        if dumped.binary_search(&name).is_err() {
            missing.push(name.to_owned());
        }
    };
    for net in state.networks.values() {
        want(&net.bridge);
        for a in net.attachments.summaries() {
            want(a.host_ifname());
        }
    }
    // A name recorded twice is looked up once.
    missing.sort_unstable();
    missing.dedup();
    for name in &missing {
        links.extend(h.link_by_name(name)?);
    }
    Ok(links)
}

/// Moves the whole process into a private network and mount namespace (the
/// demo's sandbox; no other thread may exist yet).
pub fn enter_sandbox() -> Result<()> {
    Ok(sandbox::enter()?)
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

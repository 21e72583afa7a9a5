//! A machine made of tables, for unit tests that need no root: `FakeProbe`
//! answers the read-only questions from tables a test fills in, and
//! `Fake` (a `Machine`) records every step it is asked to carry out as a
//! typed `Op`, failing or stopping at the step a test names.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::probe::{NsState, Probe, Result};
use super::{Error, Host, Kernel, Machine};
use crate::kernel::netlink::{AddressInfo, LinkInfo, LinkKind, RouteInfo};
use crate::kernel::netns;
use crate::model::lab::Impairment;
use crate::model::overlay::Peer;
use crate::model::ports::{HostListener, Protocol};
use crate::model::{NsRef, State};
use crate::plan::{undo_of, LanOp, Op, Target};

/// One namespace (or the host) as a test describes it.
#[derive(Debug, Clone, Default)]
pub struct FakeNs {
    pub links: Vec<LinkInfo>,
    pub addresses: Vec<AddressInfo>,
    pub routes: Vec<RouteInfo>,
}

/// A machine made of tables. A namespace absent from `namespaces` does not
/// exist; the firewall table is whatever `firewall` holds (the rendering of
/// the record makes an intact one).
#[derive(Debug, Clone, Default)]
pub struct FakeProbe {
    pub host: FakeNs,
    pub namespaces: BTreeMap<NsRef, FakeNs>,
    pub sysctls: BTreeMap<String, String>,
    pub firewall: Option<Value>,
    pub firewall_intact: bool,
    pub files: Vec<std::path::PathBuf>,
    /// Paths that lead to the host's own namespace.
    pub host_aliases: Vec<NsRef>,
    pub listeners: Vec<HostListener>,
    /// The two ends of each veth pair made by a step, by index both ways.
    pub peers: BTreeMap<u32, u32>,
    /// The overlay peers programmed on each VXLAN device, by its name.
    pub overlay_peers: BTreeMap<String, Vec<Peer>>,
    /// The address the host sends from, whatever the destination (none:
    /// no route).
    pub source: Option<std::net::IpAddr>,
    /// nsnet's rules in DOCKER-USER, of iptables and ip6tables.
    pub docker_forward: [Option<crate::firewall::docker_user::Placed>; 2],
    /// The peers each overlay network's VXLAN guard lets through, by VNI.
    pub vxlan_guards: BTreeMap<u32, Vec<std::net::Ipv4Addr>>,
    /// Other tables' forward chains with a drop policy.
    pub foreign_drops: Vec<crate::firewall::rules::ForeignDrop>,
    /// The answers of route lookups, by where and to what (none: no
    /// route).
    pub route_answers: Vec<(
        Target,
        std::net::IpAddr,
        Option<crate::kernel::netlink::RouteLookup>,
    )>,
    /// The whole ruleset (none: an empty one).
    pub ruleset: Option<Value>,
    /// Where something listens: (namespace, port).
    pub listening: Vec<(Target, u16)>,
    /// Byte counters (received, sent) by namespace and link.
    pub counters: Vec<(Target, String, u64, u64)>,
    /// Who answers duplicate address probes on the LAN, and the probes
    /// asked for.
    pub lan_holders: Vec<crate::model::lan::LanHolder>,
    pub lan_probes: Vec<Vec<std::net::IpAddr>>,
    /// Kinds of link the kernel knows beyond the built-in ones.
    pub kinds: Vec<String>,
    /// What a probe packet meets (none: no answer, no event).
    pub probe_result: Option<(
        crate::kernel::nftrace::Outcome,
        Vec<crate::kernel::nftrace::Event>,
    )>,
}

impl FakeProbe {
    fn ns(&self, target: &Target) -> Result<&FakeNs> {
        match target {
            Target::Host => Ok(&self.host),
            Target::Ns(ns) => self
                .namespaces
                .get(ns)
                .ok_or_else(|| netns::Error::NotFound(ns.to_string()).into()),
        }
    }

    /// Adds a link to `target` (the namespace is created if needed) and
    /// returns its index.
    pub fn add_link(&mut self, target: &Target, link: LinkInfo) -> u32 {
        let ns = match target {
            Target::Host => &mut self.host,
            Target::Ns(ns) => self.namespaces.entry(ns.clone()).or_default(),
        };
        let index = link.index;
        ns.links.push(link);
        index
    }
}

impl Probe for FakeProbe {
    fn namespace_state(&mut self, ns: &NsRef) -> Result<NsState> {
        Ok(if self.host_aliases.contains(ns) {
            NsState::Host
        } else if self.namespaces.contains_key(ns) {
            NsState::Other
        } else {
            NsState::Missing
        })
    }

    fn links(&mut self, target: &Target) -> Result<Vec<LinkInfo>> {
        Ok(self.ns(target)?.links.clone())
    }

    fn link(&mut self, target: &Target, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self
            .ns(target)?
            .links
            .iter()
            .find(|l| l.name == name)
            .cloned())
    }

    fn addresses(&mut self, target: &Target) -> Result<Vec<AddressInfo>> {
        Ok(self.ns(target)?.addresses.clone())
    }

    fn routes(&mut self, target: &Target) -> Result<Vec<RouteInfo>> {
        Ok(self.ns(target)?.routes.clone())
    }

    fn impairment(
        &mut self,
        _target: &Target,
        _ifname: &str,
    ) -> Result<Option<crate::model::lab::Impairment>> {
        Ok(None)
    }

    fn sysctl(&mut self, key: &str) -> Option<String> {
        self.sysctls.get(key).cloned()
    }

    /// The interface's entries of `sysctls` that differ from the
    /// `default` entry of their directory.
    fn device_sysctls(&mut self, ifname: &str) -> BTreeMap<String, String> {
        let own = format!("/{ifname}/");
        self.sysctls
            .iter()
            .filter_map(|(key, value)| {
                let (dir, name) = key.strip_prefix("net/")?.split_once(&own)?;
                let default = self.sysctls.get(&format!("net/{dir}/default/{name}"));
                (default != Some(value)).then(|| (format!("{dir}/{name}"), value.clone()))
            })
            .collect()
    }

    fn firewall_table(&mut self) -> Result<Option<Value>> {
        Ok(self.firewall.clone())
    }

    fn firewall_intact(&mut self, _state: &State) -> Result<bool> {
        Ok(self.firewall_intact)
    }

    fn vxlan_guard(&mut self, vni: u32) -> Result<Option<(Vec<std::net::Ipv4Addr>, bool)>> {
        Ok(self.vxlan_guards.get(&vni).map(|p| (p.clone(), true)))
    }

    fn docker_forward(&mut self, v6: bool) -> Result<Option<crate::firewall::docker_user::Placed>> {
        Ok(self.docker_forward[usize::from(v6)].clone())
    }

    fn foreign_forward_drops(&mut self) -> Result<Vec<crate::firewall::rules::ForeignDrop>> {
        Ok(self.foreign_drops.clone())
    }

    fn route_get(
        &mut self,
        target: &Target,
        dst: std::net::IpAddr,
    ) -> Result<Option<crate::kernel::netlink::RouteLookup>> {
        Ok(self
            .route_answers
            .iter()
            .find(|(t, d, _)| t == target && *d == dst)
            .and_then(|(_, _, r)| r.clone()))
    }

    fn counters(&mut self, target: &Target) -> Result<Vec<(String, u64, u64)>> {
        Ok(self
            .counters
            .iter()
            .filter(|(t, ..)| t == target)
            .map(|(_, n, rx, tx)| (n.clone(), *rx, *tx))
            .collect())
    }

    fn send_probe(
        &mut self,
        _ns: Option<&NsRef>,
        _src: std::net::IpAddr,
        _dst: std::net::SocketAddr,
        _l4proto: u8,
    ) -> Result<(
        crate::kernel::nftrace::Outcome,
        Vec<crate::kernel::nftrace::Event>,
    )> {
        Ok(self
            .probe_result
            .clone()
            .unwrap_or((crate::kernel::nftrace::Outcome::NoAnswer, Vec::new())))
    }

    fn ruleset(&mut self) -> Result<Value> {
        Ok(self
            .ruleset
            .clone()
            .unwrap_or_else(|| serde_json::json!({"nftables": []})))
    }

    fn listening(&mut self, target: &Target, _protocol: Protocol, port: u16) -> Result<bool> {
        Ok(self
            .listening
            .iter()
            .any(|(t, p)| t == target && *p == port))
    }

    fn file_exists(&mut self, path: &std::path::Path) -> bool {
        self.files.iter().any(|f| f == path)
    }

    fn host_listeners(&mut self, protocol: Protocol) -> Result<Vec<HostListener>> {
        Ok(self
            .listeners
            .iter()
            .filter(|l| l.protocol == protocol)
            .cloned()
            .collect())
    }

    fn socket_holder(&mut self, _inode: u32) -> Option<String> {
        None
    }

    fn source_towards(&mut self, _dest: std::net::SocketAddr) -> std::io::Result<std::net::IpAddr> {
        self.source
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENETUNREACH))
    }

    fn namespaces(&mut self) -> Result<Vec<String>> {
        Ok(self
            .namespaces
            .keys()
            .filter_map(|ns| ns.name().map(str::to_string))
            .collect())
    }

    fn bridge_ports(&mut self) -> Result<Vec<LinkInfo>> {
        Ok(self
            .host
            .links
            .iter()
            .filter(|l| l.master.is_some())
            .cloned()
            .collect())
    }

    fn peers(&mut self, vxlan: &str) -> Result<Vec<Peer>> {
        Ok(self.overlay_peers.get(vxlan).cloned().unwrap_or_default())
    }

    fn lan_probe(
        &mut self,
        ifname: &str,
        addrs: &[std::net::IpAddr],
        _wait: std::time::Duration,
    ) -> Result<Vec<crate::model::lan::LanHolder>> {
        if !self.host.links.iter().any(|l| l.name == ifname) {
            return Err(no_such_link(&Target::Host, ifname));
        }
        self.lan_probes.push(addrs.to_vec());
        Ok(self
            .lan_holders
            .iter()
            .filter(|h| addrs.contains(&h.address))
            .copied()
            .collect())
    }

    fn kind_supported(&mut self, kind: &str) -> Result<bool> {
        Ok(self.kinds.iter().any(|k| k == kind))
    }
}

impl FakeProbe {
    /// A machine that has everything `state` records, as nsnet made it.
    pub fn matching(state: &State) -> FakeProbe {
        let mut p = FakeProbe {
            firewall: (!state.networks.is_empty())
                .then(|| crate::firewall::rules::render_listing(state)),
            firewall_intact: true,
            ..FakeProbe::default()
        };
        let mut next_index = 2;
        let mut link = |name: &str, kind, master| {
            next_index += 1;
            LinkInfo {
                index: next_index,
                name: name.to_string(),
                kind,
                master,
                mac: None,
                mtu: 1500,
                up: true,
                group: 0,
            }
        };
        for (key, value) in crate::model::sysctl::needed(state) {
            p.sysctls.insert(key.to_string(), value.to_string());
        }
        for net in state.networks.values() {
            let bridge = p.add_link(&Target::Host, link(&net.bridge, LinkKind::Bridge, None));
            for s in &net.subnets {
                p.host.addresses.push(AddressInfo {
                    index: bridge,
                    addr: s.gateway_net(),
                });
            }
            for a in &net.attachments {
                p.add_link(
                    &Target::Host,
                    link(&a.host_ifname, LinkKind::Veth, Some(bridge)),
                );
                let inside = Target::Ns(a.namespace.clone());
                let index = p.add_link(&inside, link(&a.ifname, LinkKind::Veth, None));
                let ns = p.namespaces.get_mut(&a.namespace).expect("just added");
                for addr in &a.addresses {
                    ns.addresses.push(AddressInfo { index, addr: *addr });
                }
                if !net.internal {
                    for s in &net.subnets {
                        let any = if s.cidr.addr().is_ipv4() {
                            "0.0.0.0/0"
                        } else {
                            "::/0"
                        };
                        ns.routes.push(RouteInfo {
                            destination: any.parse().expect("valid"),
                            gateway: Some(s.gateway),
                            oif: Some(index),
                            protocol: libc::RTPROT_STATIC,
                            metric: None,
                        });
                    }
                }
            }
        }
        p
    }
}

/// What a `Fake` machine is and has done.
#[derive(Debug, Default)]
pub struct FakeState {
    /// What the machine answers; the steps carried out change it.
    pub probe: FakeProbe,
    /// Every step carried out, in order (a failed step is not in it).
    pub applied: Vec<Op>,
    /// Steps asked for so far, failed ones included.
    pub calls: usize,
    /// The k-th step asked for (from 1, over the machine's life) fails
    /// as if the kernel had refused it.
    pub fail_at: Option<usize>,
    /// The k-th step panics before it is carried out: the command stops
    /// there as a killed process would, leaving its journal behind (the
    /// test catches the unwind).
    pub abort_at: Option<usize>,
}

/// A machine for unit tests, shared by the test and the `Nsnet` it drives:
/// every `Host` it opens is the same tables and the same log of steps.
#[derive(Debug, Clone, Default)]
pub struct Fake(Arc<Mutex<FakeState>>);

/// The panic message of a step `abort_at` stopped at.
pub const ABORTED: &str = "fake machine: aborted at the step the test named";

impl Fake {
    /// The machine's state, to read or to set up.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked on purpose (abort_at) poisons nothing of
        // interest: the tables are consistent between steps.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The steps carried out so far, emptied.
    pub fn take_applied(&self) -> Vec<Op> {
        std::mem::take(&mut self.state().applied)
    }
}

impl Machine for Fake {
    fn open(&self) -> Box<dyn Host> {
        Box::new(self.clone())
    }

    fn privileged(&self) -> bool {
        true
    }
}

impl Kernel for Fake {
    fn apply(&mut self, op: &Op) -> std::result::Result<Option<Op>, Error> {
        let mut s = self.state();
        s.calls += 1;
        let call = s.calls;
        if s.abort_at == Some(call) {
            drop(s);
            std::panic::panic_any(ABORTED);
        }
        if s.fail_at == Some(call) {
            return Err(Error::Injected(call));
        }
        let previous = s.probe.carry_out(op)?;
        s.applied.push(op.clone());
        Ok(undo_of(op, previous))
    }
}

macro_rules! delegate_probe {
    ($($name:ident($($arg:ident: $t:ty),*) -> $r:ty;)*) => {
        impl Probe for Fake {
            $(fn $name(&mut self, $($arg: $t),*) -> $r {
                self.state().probe.$name($($arg),*)
            })*
        }
    };
}

delegate_probe! {
    namespace_state(ns: &NsRef) -> Result<NsState>;
    links(target: &Target) -> Result<Vec<LinkInfo>>;
    link(target: &Target, name: &str) -> Result<Option<LinkInfo>>;
    addresses(target: &Target) -> Result<Vec<AddressInfo>>;
    routes(target: &Target) -> Result<Vec<RouteInfo>>;
    impairment(target: &Target, ifname: &str) -> Result<Option<Impairment>>;
    sysctl(key: &str) -> Option<String>;
    device_sysctls(ifname: &str) -> BTreeMap<String, String>;
    firewall_table() -> Result<Option<Value>>;
    firewall_intact(state: &State) -> Result<bool>;
    foreign_forward_drops() -> Result<Vec<crate::firewall::rules::ForeignDrop>>;
    docker_forward(v6: bool) -> Result<Option<crate::firewall::docker_user::Placed>>;
    vxlan_guard(vni: u32) -> Result<Option<(Vec<std::net::Ipv4Addr>, bool)>>;
    file_exists(path: &Path) -> bool;
    host_listeners(protocol: Protocol) -> Result<Vec<HostListener>>;
    socket_holder(inode: u32) -> Option<String>;
    source_towards(dest: std::net::SocketAddr) -> std::io::Result<std::net::IpAddr>;
    namespaces() -> Result<Vec<String>>;
    bridge_ports() -> Result<Vec<LinkInfo>>;
    peers(vxlan: &str) -> Result<Vec<Peer>>;
    lan_probe(ifname: &str, addrs: &[std::net::IpAddr], wait: std::time::Duration) -> Result<Vec<crate::model::lan::LanHolder>>;
    kind_supported(kind: &str) -> Result<bool>;
    route_get(target: &Target, dst: std::net::IpAddr) -> Result<Option<crate::kernel::netlink::RouteLookup>>;
    ruleset() -> Result<Value>;
    listening(target: &Target, protocol: Protocol, port: u16) -> Result<bool>;
    counters(target: &Target) -> Result<Vec<(String, u64, u64)>>;
    send_probe(ns: Option<&NsRef>, src: std::net::IpAddr, dst: std::net::SocketAddr, l4proto: u8) -> Result<(crate::kernel::nftrace::Outcome, Vec<crate::kernel::nftrace::Event>)>;
}

/// What nft would list after the whole-table transaction `whole` (as
/// `firewall::rules::render` makes it): its objects, with each map's
/// elements in it; `None` when it leaves no table.
fn listing(whole: &Value) -> Option<Value> {
    let cmds = whole["nftables"].as_array()?;
    let mut items: Vec<Value> = Vec::new();
    for cmd in cmds.iter().skip(2) {
        let Some(add) = cmd.get("add") else { continue };
        if let Some(e) = add.get("element") {
            let named = |i: &&mut Value| ["map", "set"].iter().any(|k| i[*k]["name"] == e["name"]);
            if let Some(item) = items.iter_mut().find(named) {
                let kind = if item.get("map").is_some() {
                    "map"
                } else {
                    "set"
                };
                item[kind]["elem"] = e["elem"].clone();
            }
            continue;
        }
        let kind = ["map", "set", "chain", "rule", "table"]
            .into_iter()
            .find(|k| add.get(*k).is_some())?;
        items.push(serde_json::json!({ kind: add[kind] }));
    }
    (!items.is_empty()).then(|| serde_json::json!({ "nftables": items }))
}

/// The kernel's refusal of a step, with `errno`.
fn refused(op: &'static str, target: &str, errno: i32) -> Error {
    crate::kernel::netlink::Error::Kernel {
        op,
        target: target.to_string(),
        answer: std::io::Error::from_raw_os_error(errno),
        ext_ack: None,
    }
    .into()
}

/// A link a step asks for that the tables lack: gone, as the kernel says.
fn no_such_link(target: &Target, name: &str) -> Error {
    crate::kernel::Error::NoSuchLink {
        target: target.to_string(),
        ifname: name.to_string(),
    }
    .into()
}

impl FakeProbe {
    fn ns_mut(&mut self, target: &Target) -> Result<&mut FakeNs> {
        match target {
            Target::Host => Ok(&mut self.host),
            Target::Ns(ns) => self
                .namespaces
                .get_mut(ns)
                .ok_or_else(|| netns::Error::NotFound(ns.to_string()).into()),
        }
    }

    fn next_index(&self) -> u32 {
        let all = self.namespaces.values().chain([&self.host]);
        all.flat_map(|n| n.links.iter().map(|l| l.index))
            .max()
            .unwrap_or(1)
            + 1
    }

    fn new_link(
        &mut self,
        target: &Target,
        name: &str,
        kind: LinkKind,
        master: Option<&str>,
    ) -> Result<u32> {
        let index = self.next_index();
        let master = match master {
            Some(m) => Some(self.index(&Target::Host, m)?),
            None => None,
        };
        let ns = self.ns_mut(target)?;
        if ns.links.iter().any(|l| l.name == name) {
            return Err(refused("creating link", name, libc::EEXIST));
        }
        ns.links.push(LinkInfo {
            index,
            name: name.to_string(),
            kind,
            master,
            mac: None,
            mtu: 1500,
            up: false,
            group: 0,
        });
        Ok(index)
    }

    fn index(&mut self, target: &Target, name: &str) -> Result<u32> {
        self.ns_mut(target)?
            .links
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.index)
            .ok_or_else(|| no_such_link(target, name))
    }

    fn link_mut(&mut self, target: &Target, name: &str) -> Result<&mut LinkInfo> {
        self.ns_mut(target)?
            .links
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| no_such_link(target, name))
    }

    /// Steps of networks on the LAN.
    fn lan_step(&mut self, op: &LanOp) -> Result<()> {
        match op {
            LanOp::CreateMacvlan {
                netns,
                ifname,
                parent,
                ..
            } => {
                self.index(&Target::Host, parent)?;
                let t = netns.clone().map(Target::Ns).unwrap_or(Target::Host);
                self.new_link(&t, ifname, LinkKind::Other("macvlan".into()), None)?;
            }
            LanOp::MoveDeviceIn {
                device,
                netns,
                ifname,
            } => self.move_link(
                &Target::Host,
                &device.name,
                &Target::Ns(netns.clone()),
                ifname,
            )?,
            LanOp::ReturnDevice {
                netns,
                ifname,
                device,
            } => {
                let inside = Target::Ns(netns.clone());
                if self
                    .ns(&inside)
                    .is_ok_and(|n| n.links.iter().any(|l| l.name == *ifname))
                {
                    self.move_link(&inside, ifname, &Target::Host, &device.name)?;
                }
                let index = self.index(&Target::Host, &device.name)?;
                let link = self.link_mut(&Target::Host, &device.name)?;
                link.mtu = device.mtu;
                link.up = device.up;
                link.mac = device
                    .mac
                    .as_deref()
                    .and_then(|m| crate::model::names::parse_mac(m).ok());
                let host = self.ns_mut(&Target::Host)?;
                for a in &device.addresses {
                    host.addresses.push(AddressInfo { index, addr: *a });
                }
                for r in &device.routes {
                    host.routes.push(RouteInfo {
                        destination: r.destination,
                        gateway: Some(r.gateway),
                        oif: Some(index),
                        protocol: r.protocol.unwrap_or(libc::RTPROT_BOOT),
                        metric: r.metric,
                    });
                }
            }
            LanOp::AddDeviceRoute {
                destination,
                ifname,
            } => {
                let oif = Some(self.index(&Target::Host, ifname)?);
                self.host.routes.push(RouteInfo {
                    destination: *destination,
                    gateway: None,
                    oif,
                    protocol: libc::RTPROT_STATIC,
                    metric: None,
                });
            }
            LanOp::DeleteDeviceRoute { destination, .. } => {
                self.host.routes.retain(|r| r.destination != *destination);
            }
        }
        Ok(())
    }

    /// Moves a link between namespaces under a new name: its addresses
    /// and routes stay behind (gone), and it arrives down.
    fn move_link(&mut self, from: &Target, name: &str, to: &Target, new_name: &str) -> Result<()> {
        let index = self.index(from, name)?;
        if self.ns(to)?.links.iter().any(|l| l.name == new_name) {
            return Err(refused("moving link", new_name, libc::EEXIST));
        }
        let src = self.ns_mut(from)?;
        let pos = src
            .links
            .iter()
            .position(|l| l.index == index)
            .expect("found");
        let mut link = src.links.remove(pos);
        src.addresses.retain(|a| a.index != index);
        src.routes.retain(|r| r.oif != Some(index));
        link.name = new_name.to_string();
        link.up = false;
        self.ns_mut(to)?.links.push(link);
        Ok(())
    }

    /// Deletes a link with its addresses and routes, and a veth's other
    /// end with it.
    fn delete_link(&mut self, target: &Target, name: &str) -> Result<()> {
        let index = self.index(target, name)?;
        let mut gone = vec![index];
        if let Some(peer) = self.peers.remove(&index) {
            self.peers.remove(&peer);
            gone.push(peer);
        }
        for ns in self.namespaces.values_mut().chain([&mut self.host]) {
            ns.links.retain(|l| !gone.contains(&l.index));
            ns.addresses.retain(|a| !gone.contains(&a.index));
            ns.routes
                .retain(|r| r.oif.is_none_or(|i| !gone.contains(&i)));
        }
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> Result<()> {
        let index = self.next_index();
        let lo = LinkInfo {
            index,
            name: "lo".into(),
            kind: LinkKind::Loopback,
            master: None,
            mac: None,
            mtu: 65536,
            up: false,
            group: 0,
        };
        let ns = NsRef::Named(name.to_string());
        if self.namespaces.contains_key(&ns) {
            return Err(netns::Error::Exists(name.to_string()).into());
        }
        self.namespaces.insert(
            ns,
            FakeNs {
                links: vec![lo],
                ..FakeNs::default()
            },
        );
        Ok(())
    }

    fn delete_namespace(&mut self, name: &str) -> Result<()> {
        let ns = NsRef::Named(name.to_string());
        let Some(gone) = self.namespaces.remove(&ns) else {
            return Err(netns::Error::NotFound(name.to_string()).into());
        };
        // The veths inside go, and their host ends with them.
        for l in gone.links {
            if let Some(peer) = self.peers.remove(&l.index) {
                self.peers.remove(&peer);
                self.host.links.retain(|h| h.index != peer);
            }
        }
        Ok(())
    }

    /// Carries `op` out on the tables, as the kernel would; returns the
    /// value a `SetSysctl` replaced (for its undo).
    pub fn carry_out(&mut self, op: &Op) -> Result<Option<String>> {
        match op {
            Op::CreateNetns { name } => self.add_namespace(name)?,
            Op::CreateNamespaces { names } => {
                for n in names {
                    self.add_namespace(n)?;
                }
            }
            Op::DeleteNetns { name } => self.delete_namespace(name)?,
            Op::DeleteNamespaces { names } => {
                for n in names {
                    self.delete_namespace(n)?;
                }
            }
            Op::SetSysctl {
                target: Target::Host,
                key,
                value,
            } => {
                return Ok(self.sysctls.insert(key.clone(), value.clone()));
            }
            Op::WriteResolvConf { namespace, .. } => {
                self.files.push(crate::kernel::resolv::path(namespace));
            }
            Op::RemoveResolvConf { namespace } => {
                let path = crate::kernel::resolv::path(namespace);
                self.files.retain(|f| *f != path);
            }
            Op::AddPeers { vxlan, peers } => {
                let on = self.overlay_peers.entry(vxlan.clone()).or_default();
                on.retain(|p| !peers.iter().any(|n| n.subnet == p.subnet));
                on.extend(peers.iter().cloned());
            }
            Op::RemovePeers { vxlan, peers } => {
                let on = self.overlay_peers.entry(vxlan.clone()).or_default();
                on.retain(|p| !peers.contains(p));
            }
            Op::Firewall { table_after, .. } => {
                self.firewall = listing(table_after);
                self.firewall_intact = true;
            }
            Op::GuardVxlan { guards } => {
                self.vxlan_guards
                    .retain(|vni, _| guards.iter().any(|g| g.vni == *vni));
                for g in guards {
                    self.vxlan_guards.entry(g.vni).or_default();
                }
            }
            Op::GuardPeers { vni, add, remove } => {
                let set = self.vxlan_guards.get_mut(vni).ok_or_else(|| {
                    crate::firewall::Error::Rejected(format!("no set peers_{vni}"))
                })?;
                set.retain(|a| !remove.contains(a));
                set.extend(
                    add.iter()
                        .filter(|a| !set.contains(a))
                        .copied()
                        .collect::<Vec<_>>(),
                );
            }
            // Settings the tables do not model.
            Op::SetSysctl { .. }
            | Op::SetImpairment { .. }
            | Op::ClearImpairment { .. }
            | Op::ForgetFlows { .. }
            | Op::SetHairpin { .. }
            | Op::SetPortIsolated { .. } => {}
            link_step => self.link_step(link_step)?,
        }
        Ok(None)
    }

    /// Steps that make, change or delete links and what is on them.
    fn link_step(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::CreateBridge { name, .. } => {
                self.new_link(&Target::Host, name, LinkKind::Bridge, None)?;
            }
            Op::CreateVxlan { name, .. } => {
                self.new_link(&Target::Host, name, LinkKind::Other("vxlan".into()), None)?;
            }
            Op::CreateVeth {
                host,
                peer,
                netns,
                bridge,
                handed,
                ..
            } => {
                let inside = match handed {
                    true => Target::Host,
                    false => Target::Ns(netns.clone()),
                };
                let a = self.new_link(&inside, peer, LinkKind::Veth, None)?;
                let b = self.new_link(&Target::Host, host, LinkKind::Veth, Some(bridge))?;
                self.peers.insert(a, b);
                self.peers.insert(b, a);
            }
            Op::CreateLinkPair {
                netns,
                ifname,
                peer_netns,
                peer_ifname,
                ..
            } => {
                let a = self.new_link(&Target::Ns(netns.clone()), ifname, LinkKind::Veth, None)?;
                let b = self.new_link(
                    &Target::Ns(peer_netns.clone()),
                    peer_ifname,
                    LinkKind::Veth,
                    None,
                )?;
                self.peers.insert(a, b);
                self.peers.insert(b, a);
            }
            Op::CreateSwitch { netns, bridge, .. } => {
                self.new_link(&Target::Ns(netns.clone()), bridge, LinkKind::Bridge, None)?;
            }
            Op::Lan(op) => self.lan_step(op)?,
            Op::AddPort {
                netns,
                ifname,
                bridge,
            } => {
                let t = Target::Ns(netns.clone());
                let master = self.index(&t, bridge)?;
                self.link_mut(&t, ifname)?.master = Some(master);
            }
            Op::DeleteLink { target, name } => self.delete_link(target, name)?,
            Op::DeleteLinkGroup { names, .. } | Op::DeleteLinks { names } => {
                // As the kernel's batch: the links present go, gone ones
                // are no error.
                for n in names {
                    if self.index(&Target::Host, n).is_ok() {
                        self.delete_link(&Target::Host, n)?;
                    }
                }
            }
            Op::ParkLinks { names } => {
                for n in names {
                    self.link_mut(&Target::Host, n)?.group = crate::model::PARKED_LINK_GROUP;
                }
            }
            Op::RetireLinks { links } => {
                for l in links {
                    self.link_mut(&Target::Host, &l.host_ifname)?.group =
                        crate::model::PARKED_LINK_GROUP;
                }
            }
            Op::ClearParked { name } => {
                if self.index(&Target::Host, name).is_ok() {
                    self.delete_link(&Target::Host, name)?;
                }
            }
            settings => self.link_setting(settings)?,
        }
        Ok(())
    }

    /// Steps that change what is on a link: addresses, state, routes.
    fn link_setting(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::AddAddress {
                target,
                ifname,
                addr,
            } => {
                let index = self.index(target, ifname)?;
                self.ns_mut(target)?
                    .addresses
                    .push(AddressInfo { index, addr: *addr });
            }
            Op::DeleteAddress {
                target,
                ifname,
                addr,
            } => {
                let index = self.index(target, ifname)?;
                let ns = self.ns_mut(target)?;
                let before = ns.addresses.len();
                ns.addresses
                    .retain(|a| !(a.index == index && a.addr == *addr));
                if ns.addresses.len() == before {
                    return Err(refused("deleting address", ifname, libc::EADDRNOTAVAIL));
                }
            }
            Op::LinkUp { target, ifname } => self.link_mut(target, ifname)?.up = true,
            Op::LinkDown { target, ifname } => self.link_mut(target, ifname)?.up = false,
            Op::SetMac {
                target,
                ifname,
                mac,
            } => self.link_mut(target, ifname)?.mac = Some(*mac),
            Op::AddDefaultRoute {
                target,
                ifname,
                gateway,
            } => {
                let oif = Some(self.index(target, ifname)?);
                let any = if gateway.is_ipv4() {
                    "0.0.0.0/0"
                } else {
                    "::/0"
                };
                self.ns_mut(target)?.routes.push(RouteInfo {
                    destination: any.parse().expect("valid"),
                    gateway: Some(*gateway),
                    oif,
                    protocol: libc::RTPROT_STATIC,
                    metric: None,
                });
            }
            Op::AddRoute {
                target,
                destination,
                via,
            } => {
                let ns = self.ns_mut(target)?;
                ns.routes.retain(|r| r.destination != *destination);
                ns.routes.push(RouteInfo {
                    destination: *destination,
                    gateway: Some(*via),
                    oif: None,
                    protocol: libc::RTPROT_STATIC,
                    metric: None,
                });
            }
            Op::DeleteRoute {
                target,
                destination,
                ..
            } => {
                self.ns_mut(target)?
                    .routes
                    .retain(|r| r.destination != *destination);
            }
            other => unreachable!("not a link step: {other}"),
        }
        Ok(())
    }
}

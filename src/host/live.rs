//! The live machine: carries out plan steps through netlink, namespace
//! mounts, `/proc/sys`, conntrack, resolv.conf files and the firewall
//! backend (its answers to `Probe` are in `live_probe`).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};

use super::instrument::Instrument;
use super::{Error, Kernel};
use crate::firewall;
use crate::kernel::netlink::{self, Handle, LinkKind, PortOption};
use crate::kernel::{self, conntrack, netns, resolv, sysctl};
use crate::model::NsRef;
use crate::plan::{undo_of, LanOp, Op, Target};

struct NsConn {
    fd: OwnedFd,
    handle: Handle,
}

/// The real kernel, with one netlink socket per namespace touched.
pub struct Live {
    host: Option<Handle>,
    namespaces: HashMap<NsRef, NsConn>,
    /// Interface indexes already looked up: one plan touches `eth0` several
    /// times. Entries go when their link or namespace is deleted.
    indexes: HashMap<(Target, String), u32>,
    instrument: Instrument,
    /// Processes by namespace, read once for the command's first deletion
    /// of a namespace (one pass over /proc however many it deletes).
    processes: Option<HashMap<netns::NsKey, Vec<i32>>>,
}

/// How long the processes of a namespace being deleted have to end after
/// SIGTERM before they get SIGKILL.
const PROCESS_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

type KResult<T> = Result<T, kernel::Error>;

impl Live {
    pub(super) fn new() -> Live {
        Live {
            host: None,
            namespaces: HashMap::new(),
            indexes: HashMap::new(),
            instrument: Instrument::from_env(),
            processes: None,
        }
    }

    /// The host socket, opened in the calling thread's namespace, which is
    /// the namespace nsnet was started in: a thread that visits another
    /// namespace is back before it opens anything else (`netns::in_netns`).
    pub(super) fn host(&mut self) -> KResult<&mut Handle> {
        if self.host.is_none() {
            self.host = Some(Handle::open()?);
        }
        Ok(self.host.as_mut().expect("just set"))
    }

    fn ns(&mut self, ns: &NsRef) -> KResult<&mut NsConn> {
        if !self.namespaces.contains_key(ns) {
            let fd = netns::open(ns)?;
            let handle = netns::in_netns(fd.as_fd(), &ns.to_string(), Handle::open)??;
            self.namespaces.insert(ns.clone(), NsConn { fd, handle });
        }
        Ok(self.namespaces.get_mut(ns).expect("just inserted"))
    }

    /// A netlink socket in the namespace `target`.
    pub(super) fn handle(&mut self, target: &Target) -> KResult<&mut Handle> {
        match target {
            Target::Host => self.host(),
            Target::Ns(ns) => Ok(&mut self.ns(ns)?.handle),
        }
    }

    fn index_of(&mut self, target: &Target, ifname: &str) -> KResult<u32> {
        let key = (target.clone(), ifname.to_string());
        if let Some(index) = self.indexes.get(&key) {
            return Ok(*index);
        }
        let index = self
            .handle(target)?
            .link_by_name(ifname)?
            .map(|l| l.index)
            .ok_or_else(|| kernel::Error::NoSuchLink {
                target: target.to_string(),
                ifname: ifname.to_string(),
            })?;
        self.indexes.insert(key, index);
        Ok(index)
    }

    /// Drops the sockets held in a namespace: an open socket keeps a
    /// namespace alive after its name is gone, and with it the veth inside.
    pub fn forget(&mut self, ns: &NsRef) {
        self.namespaces.remove(ns);
        let target = Target::Ns(ns.clone());
        self.indexes.retain(|(t, _), _| *t != target);
    }

    fn forget_host_links(&mut self, names: &[String]) {
        self.indexes
            .retain(|(t, n), _| *t != Target::Host || !names.contains(n));
    }

    fn create_netns(&mut self, name: &str) -> KResult<()> {
        // Open the namespace's netlink socket while creating it: the next
        // steps work inside it anyway.
        let (fd, handle) = netns::add_with(name, Handle::open)?;
        match handle {
            Ok(handle) => {
                self.namespaces
                    .insert(NsRef::Named(name.to_string()), NsConn { fd, handle });
                Ok(())
            }
            Err(e) => {
                let _ = netns::del(name);
                Err(e.into())
            }
        }
    }

    /// Creates namespaces in parallel, all or nothing within the step too.
    fn create_namespaces(&mut self, names: &[String]) -> KResult<()> {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(4);
        let results = netns::add_many(names, workers, Handle::open);
        let mut first_error: Option<kernel::Error> = None;
        for (name, r) in names.iter().zip(results) {
            match r {
                Ok((fd, Ok(handle))) => {
                    self.namespaces
                        .insert(NsRef::Named(name.clone()), NsConn { fd, handle });
                }
                Ok((_, Err(e))) => {
                    let _ = netns::del(name);
                    first_error.get_or_insert(e.into());
                }
                Err(e) => {
                    first_error.get_or_insert(e.into());
                }
            }
        }
        let Some(e) = first_error else {
            return Ok(());
        };
        for name in names {
            let ns = NsRef::Named(name.clone());
            if self.namespaces.contains_key(&ns) {
                self.forget(&ns);
                let _ = netns::del(name);
            }
        }
        Err(e)
    }

    /// Deletes a namespace after ending the processes in it: a process
    /// left there would keep the namespace, its interfaces and addresses
    /// alive, unnamed, for as long as it runs.
    fn delete_netns(&mut self, name: &str) -> KResult<()> {
        self.forget(&NsRef::Named(name.to_string()));
        if let Some(key) = netns::key(name) {
            let pids = self
                .processes
                .get_or_insert_with(netns::processes_by_namespace)
                .remove(&key)
                .unwrap_or_default();
            if !pids.is_empty() {
                netns::end_processes(name, &pids, PROCESS_GRACE)?;
            }
        }
        Ok(netns::del(name)?)
    }

    fn create_veth(
        &mut self,
        spec: &Op,
        host: &str,
        peer: &str,
        netns: &NsRef,
        bridge: &str,
    ) -> KResult<()> {
        let Op::CreateVeth {
            mtu,
            mac,
            group,
            ipv6,
            handed,
            ..
        } = spec
        else {
            unreachable!("called for CreateVeth only")
        };
        let master = match self.host()?.link_by_name(bridge)? {
            Some(l) if l.kind == LinkKind::Bridge => l.index,
            Some(l) => {
                return Err(kernel::Error::NotABridge {
                    name: bridge.to_string(),
                    kind: format!("{:?}", l.kind).to_lowercase(),
                })
            }
            None => {
                return Err(kernel::Error::NoSuchLink {
                    target: "host".into(),
                    ifname: bridge.to_string(),
                })
            }
        };
        // The name may have belonged to a link deleted or parked earlier in
        // this run: whatever index was looked up for it is stale.
        self.indexes.remove(&(Target::Host, host.to_string()));
        // A handed peer is made in the host (this thread's namespace), for
        // its runtime to move into `netns`, which may not exist yet.
        let fd = if *handed {
            netns::current()?
        } else {
            self.ns_fd(netns)?
        };
        self.host()?.create_veth(&netlink::VethSpec {
            host_name: host,
            peer_name: peer,
            peer_netns: fd.as_fd(),
            master: Some(master),
            mtu: *mtu,
            peer_mac: *mac,
            group: Some(*group),
            up: *ipv6,
        })?;
        if *handed {
            // The runtime configures its end; the host end comes up here.
            let index = self.index_of(&Target::Host, host)?;
            match ipv6 {
                true => self.host()?.set_up(index, host, true)?,
                false => self
                    .host()?
                    .set_without_ipv6_link_local(index, host, true)?,
            }
            return Ok(());
        }
        if !*ipv6 {
            self.ipv4_only(host, peer, netns)?;
        }
        Ok(())
    }

    fn create_vxlan(&mut self, op: &Op) -> KResult<()> {
        let Op::CreateVxlan {
            name,
            vni,
            port,
            local,
            underlay,
            mac,
            mtu,
            group,
        } = op
        else {
            unreachable!("called for CreateVxlan only")
        };
        let underlay_index = self.index_of(&Target::Host, underlay)?;
        self.host()?.create_vxlan(&netlink::VxlanSpec {
            name,
            vni: *vni,
            port: *port,
            local: *local,
            underlay_index,
            mac: *mac,
            mtu: *mtu,
            group: Some(*group),
        })?;
        Ok(())
    }

    /// Steps of networks on the LAN: macvlan interfaces, routes through
    /// the host's own one, host interfaces moved in and back.
    fn lan_step(&mut self, op: &LanOp) -> KResult<()> {
        match op {
            LanOp::CreateMacvlan {
                netns,
                ifname,
                parent,
                mode,
                mtu,
                group,
            } => {
                let parent = self.index_of(&Target::Host, parent)?;
                let fd = match netns {
                    Some(ns) => Some(self.ns_fd(ns)?),
                    None => None,
                };
                let target = netns.clone().map(Target::Ns).unwrap_or(Target::Host);
                self.indexes.remove(&(target, ifname.clone()));
                self.host()?.create_macvlan(&netlink::MacvlanSpec {
                    name: ifname,
                    parent,
                    mode: *mode,
                    netns: fd.as_ref().map(|f| f.as_fd()),
                    mtu: *mtu,
                    group: *group,
                })?;
            }
            LanOp::AddDeviceRoute {
                destination,
                ifname,
            } => {
                let index = self.index_of(&Target::Host, ifname)?;
                self.host()?.add_device_route(*destination, index)?;
            }
            LanOp::DeleteDeviceRoute {
                destination,
                ifname,
            } => {
                let index = self.index_of(&Target::Host, ifname)?;
                self.host()?.delete_device_route(*destination, index)?;
            }
            LanOp::MoveDeviceIn {
                device,
                netns,
                ifname,
            } => {
                let index = self.index_of(&Target::Host, &device.name)?;
                let fd = self.ns_fd(netns)?;
                self.host()?
                    .move_link(index, &device.name, fd.as_fd(), ifname)?;
                self.forget_host_links(std::slice::from_ref(&device.name));
            }
            LanOp::ReturnDevice {
                netns,
                ifname,
                device,
            } => self.return_device(netns, ifname, device)?,
        }
        Ok(())
    }

    /// A duplicate of the descriptor of namespace `ns` (opened once).
    fn ns_fd(&mut self, ns: &NsRef) -> KResult<OwnedFd> {
        let conn = self.ns(ns)?;
        conn.fd.try_clone().map_err(|e| {
            kernel::Error::Netns(netns::Error::Open {
                name: ns.to_string(),
                source: e,
            })
        })
    }

    /// Moves a host interface back from `netns` (if it is still there) and
    /// puts back its MTU, MAC, settings, addresses, up state and routes.
    fn return_device(
        &mut self,
        ns: &NsRef,
        ifname: &str,
        device: &crate::model::lan::SavedDevice,
    ) -> KResult<()> {
        let inside = Target::Ns(ns.clone());
        let there = match self.handle(&inside) {
            Ok(h) => h.link_by_name(ifname)?,
            Err(e) if e.is_gone() => None,
            Err(e) => return Err(e),
        };
        if let Some(link) = there {
            let host = netns::current()?;
            self.handle(&inside)?
                .move_link(link.index, ifname, host.as_fd(), &device.name)?;
            self.indexes.remove(&(inside, ifname.to_string()));
        }
        self.forget_host_links(std::slice::from_ref(&device.name));
        let h = self.host()?;
        let now = h
            .link_by_name(&device.name)?
            .ok_or_else(|| kernel::Error::NoSuchLink {
                target: "host".into(),
                ifname: device.name.clone(),
            })?;
        let index = now.index;
        if now.mtu != device.mtu {
            h.set_mtu(index, &device.name, device.mtu)?;
        }
        let mac = device
            .mac
            .as_deref()
            .and_then(|m| crate::model::names::parse_mac(m).ok());
        if let Some(mac) = mac.filter(|m| now.mac != Some(*m)) {
            h.set_mac(index, &device.name, mac)?;
        }
        // Before the addresses: disable_ipv6, accept_dad and the like
        // decide what adding them does.
        for (relative, value) in &device.sysctls {
            sysctl::write(&sysctl::device_key(&device.name, relative), value)?;
        }
        for a in &device.addresses {
            match h.add_address(index, &device.name, a) {
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                other => other?,
            }
        }
        if device.up != now.up {
            h.set_up(index, &device.name, device.up)?;
        }
        for r in &device.routes {
            h.restore_route(r, index)?;
        }
        Ok(())
    }

    /// Takes both ends of a new veth out of IPv6 autoconfiguration (no
    /// link-local address, hence no DAD, RS or MLD), then brings the host
    /// end up: one netlink request per end, no sysctl.
    fn ipv4_only(&mut self, host: &str, peer: &str, netns: &NsRef) -> KResult<()> {
        let inside = Target::Ns(netns.clone());
        let peer_index = self.index_of(&inside, peer)?;
        match self
            .handle(&inside)?
            .set_without_ipv6_link_local(peer_index, peer, false)
        {
            // A kernel without IPv6: there is nothing to turn off.
            Err(e) if e.errno() == Some(libc::EAFNOSUPPORT) => {
                let index = self.index_of(&Target::Host, host)?;
                return Ok(self.host()?.set_up(index, host, true)?);
            }
            other => other?,
        }
        let index = self.index_of(&Target::Host, host)?;
        Ok(self
            .host()?
            .set_without_ipv6_link_local(index, host, true)?)
    }

    fn delete_link(&mut self, target: &Target, name: &str) -> KResult<()> {
        let index = self.index_of(target, name)?;
        self.indexes.remove(&(target.clone(), name.to_string()));
        Ok(self.handle(target)?.delete_link(index, name)?)
    }

    /// Deletes the listed host links in one request when they are exactly
    /// the members of `group`: a foreign link that happens to share the
    /// number is never touched. Whatever is listed but outside the group
    /// goes one by one.
    fn delete_link_group(&mut self, group: u32, names: &[String]) -> KResult<()> {
        let in_group: Vec<netlink::LinkInfo> = self
            .host()?
            .links()?
            .into_iter()
            .filter(|l| l.group == group)
            .collect();
        self.forget_host_links(names);
        let batched = !in_group.is_empty() && in_group.iter().all(|l| names.contains(&l.name));
        let members: Vec<String> = in_group.into_iter().map(|l| l.name).collect();
        if batched {
            self.host()?.delete_group(group)?;
        }
        let rest = names.iter().filter(|n| !(batched && members.contains(n)));
        kernel::each_keep_going(rest, |name| self.delete_link(&Target::Host, name))
    }

    /// Deletes several host links with one RCU grace period: each is moved
    /// into a link group nobody uses, then the group goes in one request.
    /// One link is simply deleted.
    fn delete_links(&mut self, names: &[String]) -> KResult<()> {
        let mut present: Vec<(u32, String)> = Vec::new();
        for name in names {
            match self.index_of(&Target::Host, name) {
                Ok(index) => present.push((index, name.clone())),
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
        }
        self.forget_host_links(names);
        let host = self.host()?;
        match present.as_slice() {
            [] => return Ok(()),
            [(index, name)] => return Ok(host.delete_link(*index, name)?),
            _ => {}
        }
        let used: HashSet<u32> = host.links()?.iter().map(|l| l.group).collect();
        let mut group = 0x7e00_0000 | (std::process::id() & 0x00ff_ffff);
        while used.contains(&group) {
            group = group.wrapping_add(1) | 0x7e00_0000;
        }
        for (index, name) in &present {
            host.set_group(*index, name, group)?;
        }
        Ok(host.delete_group(group)?)
    }

    /// See `Op::RetireLinks`. A namespace or link already gone has nothing
    /// left to retire.
    fn retire_links(&mut self, links: &[crate::plan::RetiredLink]) -> KResult<()> {
        let gone_is_fine = |r: KResult<()>| match r {
            Err(e) if e.is_gone() => Ok(()),
            other => other,
        };
        kernel::each_keep_going(links, |l| {
            gone_is_fine((|| {
                let inside = Target::Ns(l.netns.clone());
                let index = self.index_of(&inside, &l.ifname)?;
                for addr in &l.addresses {
                    gone_is_fine(Ok(self
                        .handle(&inside)?
                        .delete_address(index, &l.ifname, addr)?))?;
                }
                Ok(())
            })())?;
            gone_is_fine((|| {
                let index = self.index_of(&Target::Host, &l.host_ifname)?;
                Ok(self.host()?.set_group(
                    index,
                    &l.host_ifname,
                    crate::model::PARKED_LINK_GROUP,
                )?)
            })())
        })?;
        let names: Vec<String> = links.iter().map(|l| l.host_ifname.clone()).collect();
        self.forget_host_links(&names);
        // Both ends go in the background: no index of theirs is kept.
        self.indexes.retain(|(t, n), _| {
            !links
                .iter()
                .any(|l| *n == l.ifname && *t == Target::Ns(l.netns.clone()))
        });
        spawn_reaper(&names)
    }

    /// Steps of lab objects: links between namespaces, routes, netem.
    fn lab_step(&mut self, op: &Op) -> KResult<()> {
        match op {
            Op::CreateLinkPair {
                netns,
                ifname,
                peer_netns,
                peer_ifname,
                mtu,
            } => {
                let peer = self.ns_fd(peer_netns)?;
                let a = Target::Ns(netns.clone());
                let b = Target::Ns(peer_netns.clone());
                self.indexes.retain(|k, _| {
                    *k != (a.clone(), ifname.clone()) && *k != (b.clone(), peer_ifname.clone())
                });
                self.handle(&a)?.create_veth(&netlink::VethSpec {
                    host_name: ifname,
                    peer_name: peer_ifname,
                    peer_netns: peer.as_fd(),
                    master: None,
                    mtu: *mtu,
                    peer_mac: None,
                    group: None,
                    up: false,
                })?;
            }
            Op::CreateSwitch { netns, bridge, mac } => {
                let t = Target::Ns(netns.clone());
                self.indexes
                    .retain(|k, _| *k != (t.clone(), bridge.clone()));
                self.handle(&t)?.create_bridge(bridge, *mac, None, None)?;
            }
            Op::AddPort {
                netns,
                ifname,
                bridge,
            } => {
                let t = Target::Ns(netns.clone());
                let master = self.index_of(&t, bridge)?;
                let index = self.index_of(&t, ifname)?;
                let h = self.handle(&t)?;
                // Up with its carrier now, the port forwards from the moment
                // it joins (see `sync_link_state`).
                h.sync_link_state(ifname)?;
                h.set_master(index, ifname, master)?;
            }
            Op::AddRoute {
                target,
                destination,
                via,
            } => self.handle(target)?.replace_route(*destination, *via)?,
            Op::DeleteRoute {
                target,
                destination,
                via,
            } => self.handle(target)?.delete_route(*destination, *via)?,
            Op::SetImpairment {
                target,
                ifname,
                impairment,
                ..
            } => {
                let index = self.index_of(target, ifname)?;
                self.impair(target, index, ifname, impairment)?;
            }
            Op::ClearImpairment { target, ifname } => {
                let index = self.index_of(target, ifname)?;
                let handle = self.handle(target)?;
                unless_absent(handle.clear_root_qdisc(index, ifname))?;
                unless_absent(handle.clear_loss_filter(index, ifname))?;
            }
            _ => unreachable!("lab steps only"),
        }
        Ok(())
    }

    /// netem for everything where the kernel has it; where it has not, a
    /// tbf qdisc for the rate and a bpf classifier for the loss, and a
    /// clear refusal for the rest.
    fn impair(
        &mut self,
        target: &Target,
        index: u32,
        ifname: &str,
        imp: &crate::model::lab::Impairment,
    ) -> KResult<()> {
        use crate::model::lab::Impairment;
        let handle = self.handle(target)?;
        match handle.set_impairment(index, ifname, imp) {
            Ok(()) => {
                // A loss classifier of an earlier impairment goes.
                return Ok(unless_absent(handle.clear_loss_filter(index, ifname))?);
            }
            Err(e) if e.errno() != Some(libc::ENOENT) => return Err(e.into()),
            Err(_) => {}
        }
        let netem_only = Impairment {
            rate_bps: 0,
            loss_pct: 0.0,
            ..imp.clone()
        };
        if !netem_only.is_none() {
            return Err(kernel::Error::NoNetem {
                ifname: ifname.to_string(),
            });
        }
        if imp.rate_bps > 0 {
            let rate = Impairment {
                rate_bps: imp.rate_bps,
                ..Impairment::default()
            };
            handle.set_impairment(index, ifname, &rate)?;
        } else {
            unless_absent(handle.clear_root_qdisc(index, ifname))?;
        }
        let threshold = kernel::bpf::threshold(imp.loss_pct);
        let prog = kernel::bpf::load_loss_program(threshold)?;
        Ok(handle.set_loss_filter(index, ifname, prog.as_fd(), threshold)?)
    }

    /// Sets a sysctl in `target`; returns the value it had.
    fn set_sysctl(&mut self, target: &Target, key: &str, value: &str) -> KResult<String> {
        let swap = || -> KResult<String> {
            let old = sysctl::read(key)?;
            sysctl::write(key, value)?;
            Ok(old)
        };
        match target {
            Target::Host => swap(),
            Target::Ns(ns) => {
                let fd = &self.ns(ns)?.fd;
                netns::in_netns(fd.as_fd(), &ns.to_string(), swap)?
            }
        }
    }

    /// Steps on one interface, found by name in `target`.
    fn link_step(&mut self, op: &Op) -> KResult<()> {
        let (target, ifname) = match op {
            Op::AddAddress { target, ifname, .. }
            | Op::DeleteAddress { target, ifname, .. }
            | Op::LinkUp { target, ifname }
            | Op::LinkDown { target, ifname }
            | Op::SetMac { target, ifname, .. }
            | Op::AddDefaultRoute { target, ifname, .. } => (target, ifname),
            Op::SetHairpin { ifname } | Op::SetPortIsolated { ifname } => (&Target::Host, ifname),
            _ => unreachable!("called for interface steps only"),
        };
        let index = self.index_of(target, ifname)?;
        let h = self.handle(target)?;
        match op {
            Op::AddAddress { addr, .. } => h.add_address(index, ifname, addr)?,
            Op::DeleteAddress { addr, .. } => h.delete_address(index, ifname, addr)?,
            Op::LinkUp { .. } => h.set_up(index, ifname, true)?,
            Op::LinkDown { .. } => h.set_up(index, ifname, false)?,
            Op::SetMac { mac, .. } => h.set_mac(index, ifname, *mac)?,
            Op::AddDefaultRoute { gateway, .. } => h.add_default_route(*gateway, index)?,
            Op::SetHairpin { .. } => h.set_port_option(index, ifname, PortOption::Hairpin(true))?,
            Op::SetPortIsolated { .. } => {
                h.set_port_option(index, ifname, PortOption::Isolated(true))?
            }
            _ => unreachable!("matched above"),
        }
        Ok(())
    }

    /// Applies a firewall transaction. An element-wise or in-place one that
    /// nft refuses means the table is not what nsnet left (flushed, edited):
    /// all of it is put back instead.
    fn firewall(
        transaction: &firewall::Transaction,
        whole: &serde_json::Value,
    ) -> Result<(), Error> {
        if let Err(e) = firewall::apply(&transaction.body) {
            if transaction.kind == firewall::Kind::Replace {
                return Err(e.into());
            }
            firewall::apply(whole)?;
        }
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<Option<Op>, Error> {
        let mut old_sysctl = None;
        let resolv_error = |namespace: &str, source| kernel::Error::Resolv {
            path: resolv::path(namespace).display().to_string(),
            source,
        };
        match op {
            Op::CreateNetns { name } => self.create_netns(name)?,
            Op::CreateNamespaces { names } => self.create_namespaces(names)?,
            Op::DeleteNamespaces { names } => {
                kernel::each_keep_going(names, |name| self.delete_netns(name))?
            }
            Op::DeleteNetns { name } => self.delete_netns(name)?,
            Op::CreateBridge {
                name,
                mac,
                mtu,
                group,
            } => self.host()?.create_bridge(name, *mac, *mtu, *group)?,
            Op::CreateVeth {
                host,
                peer,
                netns,
                bridge,
                ..
            } => self.create_veth(op, host, peer, netns, bridge)?,
            Op::CreateVxlan { .. } => self.create_vxlan(op)?,
            Op::DeleteLink { target, name } => self.delete_link(target, name)?,
            Op::DeleteLinkGroup { group, names } => self.delete_link_group(*group, names)?,
            Op::DeleteLinks { names } => self.delete_links(names)?,
            Op::ClearParked { name } => match self.delete_link(&Target::Host, name) {
                Err(e) if e.is_gone() => {}
                other => other?,
            },
            Op::RetireLinks { links } => self.retire_links(links)?,
            Op::CreateLinkPair { .. }
            | Op::CreateSwitch { .. }
            | Op::AddPort { .. }
            | Op::AddRoute { .. }
            | Op::DeleteRoute { .. }
            | Op::SetImpairment { .. }
            | Op::ClearImpairment { .. } => self.lab_step(op)?,
            Op::Lan(op) => self.lan_step(op)?,
            Op::ParkLinks { names } => {
                kernel::each_keep_going(names, |name| {
                    let index = self.index_of(&Target::Host, name)?;
                    Ok(self
                        .host()?
                        .set_group(index, name, crate::model::PARKED_LINK_GROUP)?)
                })?;
                // A new link may take the name while this one goes.
                self.forget_host_links(names);
            }
            Op::AddAddress { .. }
            | Op::DeleteAddress { .. }
            | Op::LinkUp { .. }
            | Op::LinkDown { .. }
            | Op::SetMac { .. }
            | Op::AddDefaultRoute { .. }
            | Op::SetHairpin { .. }
            | Op::SetPortIsolated { .. } => self.link_step(op)?,
            Op::SetSysctl { target, key, value } => {
                old_sysctl = Some(self.set_sysctl(target, key, value)?)
            }
            Op::WriteResolvConf {
                namespace,
                servers,
                search,
            } => resolv::write(namespace, servers, search)
                .map_err(|source| resolv_error(namespace, source))?,
            Op::RemoveResolvConf { namespace } => {
                resolv::remove(namespace).map_err(|source| resolv_error(namespace, source))?
            }
            Op::ForgetFlows { addrs } => {
                conntrack::forget_flows_to(addrs)?;
            }
            Op::AddPeers { vxlan, peers } => {
                if let Some(dev) = self.host()?.link_by_name(vxlan)? {
                    self.host()?.add_peers(dev.index, peers)?;
                }
            }
            Op::RemovePeers { vxlan, peers } => {
                if let Some(dev) = self.host()?.link_by_name(vxlan)? {
                    self.host()?.remove_peers(dev.index, peers)?;
                }
            }
            Op::Firewall {
                transaction,
                table_after,
                ..
            } => Self::firewall(transaction, table_after)?,
            Op::DockerForward { v6, rules } => crate::firewall::docker_user::write(*v6, rules)?,
            Op::GuardVxlan { guards } => crate::firewall::vxlan_guard::ensure(guards)?,
            Op::GuardPeers { vni, add, remove } => {
                crate::firewall::vxlan_guard::change(*vni, add, remove)?
            }
        }
        Ok(undo_of(op, old_sysctl))
    }
}

impl Kernel for Live {
    fn apply(&mut self, op: &Op) -> Result<Option<Op>, Error> {
        let timed = self.instrument.before(op)?;
        let result = self.run(op);
        if let Some(start) = timed {
            Instrument::after(op, start, &result);
        }
        result
    }

    fn set_progress(&mut self, total: usize) {
        self.instrument.set_progress(total);
    }
}

/// A qdisc or classifier to remove that is not there: nothing to do.
fn unless_absent(r: netlink::Result<()>) -> netlink::Result<()> {
    match r {
        Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(()),
        other => other,
    }
}

/// Starts `nsnet reap-parked NAME...` detached (its own session, no
/// stdio): it outlives the command, which returns without waiting for the
/// deletions.
fn spawn_reaper(names: &[String]) -> KResult<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let spawn_error = |source| kernel::Error::Spawn {
        what: "nsnet reap-parked",
        source,
    };
    let exe = std::env::current_exe().map_err(spawn_error)?;
    let mut cmd = Command::new(exe);
    cmd.arg("reap-parked")
        .args(names)
        .env_remove("CNI_COMMAND")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    cmd.spawn().map_err(spawn_error)?;
    Ok(())
}

/// `nsnet reap-parked`: deletes the named host links that are still
/// parked (a link that took the name since, outside the parked group, is
/// left alone). Errors are of no one's concern: a link that stays parked
/// is cleared by the next connect that wants its name, or by `gc`.
pub fn reap_parked(names: &[String]) {
    let Ok(mut host) = Handle::open() else {
        return;
    };
    for name in names {
        if let Ok(Some(l)) = host.link_by_name(name) {
            if l.group == crate::model::PARKED_LINK_GROUP && l.kind == LinkKind::Veth {
                let _ = host.delete_link(l.index, name);
            }
        }
    }
}

//! The live kernel: carries out plan steps through netlink, namespace
//! mounts, `/proc/sys` and the firewall module.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::netlink::{self, Handle, LinkKind};
use crate::netns::{self, NsRef};
use crate::plan::{Kernel, Op, Target};
use crate::{firewall, sysctl};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error(transparent)]
    Sysctl(#[from] sysctl::Error),
    #[error(transparent)]
    Firewall(#[from] firewall::Error),
    #[error(transparent)]
    Conntrack(#[from] crate::conntrack::Error),
    #[error("{path}: {source}")]
    Resolv {
        path: String,
        source: std::io::Error,
    },
    #[error("no interface {ifname} in {target}")]
    NoSuchLink { target: String, ifname: String },
    #[error("{name} exists but is a {kind} link, not a bridge")]
    NotABridge { name: String, kind: String },
    #[error("injected failure at kernel operation {0} (NSNET_FAIL_AT)")]
    Injected(usize),
}

impl Error {
    /// The object an undo or teardown step wanted to remove is already gone.
    pub fn is_gone(&self) -> bool {
        match self {
            Error::Netlink(e) => matches!(
                e.errno(),
                Some(libc::ENODEV) | Some(libc::EADDRNOTAVAIL) | Some(libc::ESRCH)
            ),
            Error::Netns(netns::Error::NotFound(_)) => true,
            // The interface whose sysctl was to be put back is gone.
            Error::Sysctl(
                sysctl::Error::Read { source, .. } | sysctl::Error::Write { source, .. },
            ) => source.kind() == std::io::ErrorKind::NotFound,
            Error::NoSuchLink { .. } => true,
            _ => false,
        }
    }
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// With `true`, every step is printed to stderr with its duration (`-v`).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// The step that reverses `op`. `old_sysctl` is the value a sysctl had.
pub fn undo_of(op: &Op, old_sysctl: Option<String>) -> Option<Op> {
    match op {
        Op::CreateNetns { name } => Some(Op::DeleteNetns { name: name.clone() }),
        Op::CreateNamespaces { names } => Some(Op::DeleteNamespaces {
            names: names.clone(),
        }),
        Op::CreateBridge { name, .. } => Some(Op::DeleteLink {
            target: Target::Host,
            name: name.clone(),
        }),
        Op::CreateVeth { host, .. } => Some(Op::DeleteLink {
            target: Target::Host,
            name: host.clone(),
        }),
        Op::AddAddress {
            target,
            ifname,
            addr,
        } => Some(Op::DeleteAddress {
            target: target.clone(),
            ifname: ifname.clone(),
            addr: *addr,
        }),
        Op::SetSysctl { target, key, value } => match old_sysctl {
            Some(old) if &old != value => Some(Op::SetSysctl {
                target: target.clone(),
                key: key.clone(),
                value: old,
            }),
            _ => None,
        },
        Op::Firewall {
            transaction,
            previous,
            after,
            before,
        } => Some(Op::Firewall {
            transaction: previous.clone(),
            previous: transaction.clone(),
            after: before.clone(),
            before: after.clone(),
        }),
        // Only an adopted bridge is brought up on a link nsnet did not
        // create; put it back down if a later step fails.
        Op::LinkUp { target, ifname } if ifname != "lo" && *target == Target::Host => {
            Some(Op::LinkDown {
                target: target.clone(),
                ifname: ifname.clone(),
            })
        }
        // Deleting a link removes its routes and port settings; links come
        // down with them.
        Op::LinkUp { .. }
        | Op::LinkDown { .. }
        | Op::SetMac { .. }
        | Op::SetHairpin { .. }
        | Op::AddDefaultRoute { .. } => None,
        Op::WriteResolvConf { namespace, .. } => Some(Op::RemoveResolvConf {
            namespace: namespace.clone(),
        }),
        // Deletions are not undone: teardown plans keep going instead.
        Op::DeleteNetns { .. }
        | Op::DeleteNamespaces { .. }
        | Op::DeleteLink { .. }
        | Op::DeleteLinkGroup { .. }
        | Op::DeleteLinks { .. }
        | Op::ForgetFlows { .. }
        | Op::RemoveResolvConf { .. }
        | Op::DeleteAddress { .. } => None,
    }
}

struct NsConn {
    fd: OwnedFd,
    handle: Handle,
}

/// The real kernel, with one netlink socket per namespace touched.
pub struct LiveKernel {
    host: Option<Handle>,
    namespaces: HashMap<NsRef, NsConn>,
    /// Interface indexes already looked up: one plan touches `eth0` several
    /// times. Entries go when their link or namespace is deleted.
    indexes: HashMap<(Target, String), u32>,
    calls: usize,
    fail_at: Option<usize>,
    abort_at: Option<usize>,
    /// When progress is shown (a terminal, many steps): the step count at
    /// the start, and the steps expected.
    progress: Option<(usize, usize)>,
}

impl Default for LiveKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveKernel {
    pub fn new() -> LiveKernel {
        LiveKernel {
            host: None,
            namespaces: HashMap::new(),
            indexes: HashMap::new(),
            calls: 0,
            // A debugging hook for fault-injection tests: the k-th operation
            // of this process fails as if the kernel had refused it.
            fail_at: std::env::var("NSNET_FAIL_AT")
                .ok()
                .and_then(|v| v.parse().ok()),
            // Crash tests: the process dies (SIGABRT, no cleanup) just
            // before the k-th operation, as if it had been killed there.
            abort_at: std::env::var("NSNET_ABORT_AT")
                .ok()
                .and_then(|v| v.parse().ok()),
            progress: None,
        }
    }

    /// Shows progress on stderr for `total` steps, if stderr is a terminal
    /// and there are enough of them to be worth it.
    pub fn set_progress(&mut self, total: usize) {
        use std::io::IsTerminal;
        if total > 30 && std::io::stderr().is_terminal() {
            self.progress = Some((self.calls, total));
        }
    }

    fn show_progress(&self, op: &Op) {
        if let Some((start, total)) = self.progress {
            let done = self.calls - start;
            if done.is_multiple_of(16) || done >= total {
                let text: String = op.to_string().chars().take(60).collect();
                eprint!("\r\x1b[Knsnet: [{}/{}] {text}", done.min(total), total);
                if done >= total {
                    eprintln!();
                }
            }
        }
    }

    /// The host socket, opened in the calling thread's namespace, which is
    /// the namespace nsnet was started in: nsnet never moves its main thread.
    pub fn host(&mut self) -> Result<&mut Handle, Error> {
        if self.host.is_none() {
            self.host = Some(Handle::open()?);
        }
        Ok(self.host.as_mut().expect("just set"))
    }

    fn ns(&mut self, ns: &NsRef) -> Result<&mut NsConn, Error> {
        if !self.namespaces.contains_key(ns) {
            let fd = ns.open()?;
            let handle = netns::in_netns(fd.as_fd(), &ns.to_string(), Handle::open)??;
            self.namespaces.insert(ns.clone(), NsConn { fd, handle });
        }
        Ok(self.namespaces.get_mut(ns).expect("just inserted"))
    }

    /// A netlink socket in the namespace `target`.
    pub fn handle(&mut self, target: &Target) -> Result<&mut Handle, Error> {
        match target {
            Target::Host => self.host(),
            Target::Ns(ns) => Ok(&mut self.ns(ns)?.handle),
        }
    }

    fn index_of(&mut self, target: &Target, ifname: &str) -> Result<u32, Error> {
        let key = (target.clone(), ifname.to_string());
        if let Some(index) = self.indexes.get(&key) {
            return Ok(*index);
        }
        let index = self
            .handle(target)?
            .link_by_name(ifname)?
            .map(|l| l.index)
            .ok_or_else(|| Error::NoSuchLink {
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

    /// Deletes several host links with one RCU grace period: each is moved
    /// into a link group nobody uses, then the group goes in one request.
    /// One link is simply deleted.
    fn delete_links(&mut self, names: &[String]) -> Result<(), Error> {
        let present: Vec<(u32, String)> = {
            let mut v = Vec::new();
            for name in names {
                match self.index_of(&Target::Host, name) {
                    Ok(index) => v.push((index, name.clone())),
                    Err(e) if e.is_gone() => {}
                    Err(e) => return Err(e),
                }
            }
            v
        };
        self.indexes
            .retain(|(t, n), _| *t != Target::Host || !names.contains(n));
        let host = self.host()?;
        if let [(index, name)] = present.as_slice() {
            return Ok(host.delete_link(*index, name)?);
        }
        if present.is_empty() {
            return Ok(());
        }
        let used: std::collections::HashSet<u32> = host.links()?.iter().map(|l| l.group).collect();
        let mut group = 0x7e00_0000 | (std::process::id() & 0x00ff_ffff);
        while used.contains(&group) {
            group = group.wrapping_add(1) | 0x7e00_0000;
        }
        for (index, name) in &present {
            host.set_group(*index, name, group)?;
        }
        Ok(host.delete_group(group)?)
    }

    fn run(&mut self, op: &Op) -> Result<Option<Op>, Error> {
        let mut old_sysctl = None;
        match op {
            Op::CreateNetns { name } => {
                // Open the namespace's netlink socket on the thread that
                // made it: the next steps work inside it anyway.
                let (fd, handle) = netns::add_with(name, Handle::open)?;
                match handle {
                    Ok(handle) => {
                        self.namespaces
                            .insert(NsRef::Named(name.clone()), NsConn { fd, handle });
                    }
                    Err(e) => {
                        let _ = netns::del(name);
                        return Err(e.into());
                    }
                }
            }
            Op::CreateNamespaces { names } => {
                let workers = std::thread::available_parallelism()
                    .map_or(2, |n| n.get())
                    .min(4);
                let results = netns::add_many(names, workers, Handle::open);
                let mut first_error: Option<Error> = None;
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
                if let Some(e) = first_error {
                    // All or nothing, within the step too.
                    for name in names {
                        if self.namespaces.contains_key(&NsRef::Named(name.clone())) {
                            self.forget(&NsRef::Named(name.clone()));
                            let _ = netns::del(name);
                        }
                    }
                    return Err(e);
                }
            }
            Op::DeleteNamespaces { names } => {
                let mut first_error = None;
                for name in names {
                    self.forget(&NsRef::Named(name.clone()));
                    if let Err(e) = netns::del(name) {
                        let e = Error::from(e);
                        if !e.is_gone() && first_error.is_none() {
                            first_error = Some(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(e);
                }
            }
            Op::DeleteNetns { name } => {
                self.forget(&NsRef::Named(name.clone()));
                netns::del(name)?
            }
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
                mtu,
                mac,
                group,
            } => {
                let master = self.host()?.link_by_name(bridge)?;
                let master = match master {
                    Some(l) if l.kind == LinkKind::Bridge => l.index,
                    Some(l) => {
                        return Err(Error::NotABridge {
                            name: bridge.clone(),
                            kind: format!("{:?}", l.kind).to_lowercase(),
                        })
                    }
                    None => {
                        return Err(Error::NoSuchLink {
                            target: "host".into(),
                            ifname: bridge.clone(),
                        })
                    }
                };
                let conn = self.ns(netns)?;
                let fd = conn.fd.try_clone().map_err(|e| {
                    Error::Netns(netns::Error::Open {
                        name: netns.to_string(),
                        source: e,
                    })
                })?;
                self.host()?.create_veth(&netlink::VethSpec {
                    host_name: host,
                    peer_name: peer,
                    peer_netns: fd.as_fd(),
                    master: Some(master),
                    mtu: *mtu,
                    peer_mac: *mac,
                    group: Some(*group),
                })?;
            }
            Op::DeleteLink { target, name } => {
                let index = self.index_of(target, name)?;
                self.indexes.remove(&(target.clone(), name.clone()));
                self.handle(target)?.delete_link(index, name)?;
            }
            Op::DeleteLinkGroup { group, names } => {
                let members: Vec<String> = self
                    .host()?
                    .links()?
                    .into_iter()
                    .filter(|l| l.group == *group)
                    .map(|l| l.name)
                    .collect();
                self.indexes
                    .retain(|(t, n), _| *t != Target::Host || !names.contains(n));
                // One request for the whole group, but only when every member
                // is ours: a foreign link that happens to share the number is
                // never touched. Whatever is listed but outside the group goes
                // one by one.
                let batched = !members.is_empty() && members.iter().all(|m| names.contains(m));
                if batched {
                    self.host()?.delete_group(*group)?;
                }
                let mut first_error = None;
                for name in names.iter().filter(|n| !(batched && members.contains(n))) {
                    let r = self.run(&Op::DeleteLink {
                        target: Target::Host,
                        name: name.clone(),
                    });
                    if let Err(e) = r {
                        if !e.is_gone() && first_error.is_none() {
                            first_error = Some(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(e);
                }
            }
            Op::DeleteLinks { names } => self.delete_links(names)?,
            Op::AddAddress {
                target,
                ifname,
                addr,
            } => {
                let index = self.index_of(target, ifname)?;
                self.handle(target)?.add_address(index, ifname, addr)?;
            }
            Op::DeleteAddress {
                target,
                ifname,
                addr,
            } => {
                let index = self.index_of(target, ifname)?;
                self.handle(target)?.delete_address(index, ifname, addr)?;
            }
            Op::LinkUp { target, ifname } => {
                let index = self.index_of(target, ifname)?;
                self.handle(target)?.set_up(index, ifname, true)?;
            }
            Op::SetMac {
                target,
                ifname,
                mac,
            } => {
                let index = self.index_of(target, ifname)?;
                self.handle(target)?.set_mac(index, ifname, *mac)?;
            }
            Op::LinkDown { target, ifname } => {
                let index = self.index_of(target, ifname)?;
                self.handle(target)?.set_up(index, ifname, false)?;
            }
            Op::AddDefaultRoute {
                target,
                ifname,
                gateway,
            } => {
                let index = self.index_of(target, ifname)?;
                self.handle(target)?.add_default_route(*gateway, index)?;
            }
            Op::SetSysctl {
                target: Target::Host,
                key,
                value,
            } => {
                old_sysctl = Some(sysctl::read(key)?);
                sysctl::write(key, value)?;
            }
            Op::SetSysctl {
                target: Target::Ns(ns),
                key,
                value,
            } => {
                let fd = &self.ns(ns)?.fd;
                old_sysctl = Some(netns::in_netns(
                    fd.as_fd(),
                    &ns.to_string(),
                    || -> Result<String, Error> {
                        let old = sysctl::read(key)?;
                        sysctl::write(key, value)?;
                        Ok(old)
                    },
                )??);
            }
            Op::WriteResolvConf { namespace, servers } => {
                crate::resolv::write(namespace, servers).map_err(|source| Error::Resolv {
                    path: crate::resolv::path(namespace).display().to_string(),
                    source,
                })?;
            }
            Op::RemoveResolvConf { namespace } => {
                crate::resolv::remove(namespace).map_err(|source| Error::Resolv {
                    path: crate::resolv::path(namespace).display().to_string(),
                    source,
                })?;
            }
            Op::ForgetFlows { addrs } => {
                crate::conntrack::forget_flows_to(addrs)?;
            }
            Op::SetHairpin { ifname } => {
                let index = self.index_of(&Target::Host, ifname)?;
                self.host()?.set_hairpin(index, ifname, true)?;
            }
            Op::Firewall {
                transaction, after, ..
            } => {
                if let Err(e) = firewall::apply(transaction) {
                    if firewall::replaces_table(transaction) {
                        return Err(e.into());
                    }
                    // The table is not what nsnet left (flushed, edited):
                    // put all of it back instead.
                    firewall::apply(&firewall::render(after))?;
                }
            }
        }
        Ok(undo_of(op, old_sysctl))
    }
}

impl Kernel for LiveKernel {
    fn apply(&mut self, op: &Op) -> Result<Option<Op>, Error> {
        self.calls += 1;
        if self.abort_at == Some(self.calls) {
            std::process::abort();
        }
        if self.fail_at == Some(self.calls) {
            return Err(Error::Injected(self.calls));
        }
        self.show_progress(op);
        if !VERBOSE.load(Ordering::Relaxed) {
            return self.run(op);
        }
        let start = Instant::now();
        let result = self.run(op);
        let status = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        eprintln!(
            "nsnet: {:>8.3} ms  {op}: {status}",
            start.elapsed().as_secs_f64() * 1000.0
        );
        result
    }
}

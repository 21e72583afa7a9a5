//! Read-only questions to the machine, behind one small trait: the live
//! probe asks the kernel and the firewall backend (sharing the sockets of
//! the `LiveKernel` that will apply the plan); the fake answers from tables
//! a test fills in, so that fact gathering, `check` and CNI CHECK/STATUS
//! are unit-tested without root.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::apply::{Error, LiveKernel};
use crate::kernel::netlink::{AddressInfo, LinkInfo, RouteInfo};
use crate::kernel::{netns, sysctl};
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
    /// The impairment (netem or tbf root qdisc) of an interface, if any.
    fn impairment(
        &mut self,
        target: &Target,
        ifname: &str,
    ) -> Result<Option<crate::model::lab::Impairment>>;
    /// A sysctl of nsnet's own namespace; `None` where it does not exist.
    fn sysctl(&mut self, key: &str) -> Option<String>;
    /// nsnet's firewall table as nft lists it; `None` when it is missing.
    fn firewall_table(&mut self) -> Result<Option<Value>>;
    /// Whether the live table has the rules `state` calls for.
    fn firewall_intact(&mut self, state: &State) -> Result<bool>;
    /// Other tables' forward chains whose policy is drop.
    fn foreign_forward_drops(&mut self) -> Result<Vec<String>>;
    /// Whether a file exists (a resolv.conf nsnet is about to write).
    fn file_exists(&mut self, path: &std::path::Path) -> bool;
    /// The host's sockets listening for `protocol`.
    fn host_listeners(&mut self, protocol: Protocol) -> Result<Vec<HostListener>>;
    /// `name[pid]` of a process holding the socket `inode`.
    fn socket_holder(&mut self, inode: u32) -> Option<String>;
}

/// The machine itself.
pub struct LiveProbe<'a> {
    pub kernel: &'a mut LiveKernel,
}

impl Probe for LiveProbe<'_> {
    fn namespace_state(&mut self, ns: &NsRef) -> Result<NsState> {
        Ok(match netns::id(ns)? {
            None => NsState::Missing,
            Some(id) if id == netns::current_id()? => NsState::Host,
            Some(_) => NsState::Other,
        })
    }

    fn namespace_exists(&mut self, ns: &NsRef) -> Result<bool> {
        Ok(netns::id(ns)?.is_some())
    }

    fn links(&mut self, target: &Target) -> Result<Vec<LinkInfo>> {
        Ok(self.kernel.handle(target)?.links()?)
    }

    fn link(&mut self, target: &Target, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self.kernel.handle(target)?.link_by_name(name)?)
    }

    fn addresses(&mut self, target: &Target) -> Result<Vec<AddressInfo>> {
        Ok(self.kernel.handle(target)?.addresses()?)
    }

    fn routes(&mut self, target: &Target) -> Result<Vec<RouteInfo>> {
        Ok(self.kernel.handle(target)?.routes()?)
    }

    fn impairment(
        &mut self,
        target: &Target,
        ifname: &str,
    ) -> Result<Option<crate::model::lab::Impairment>> {
        let handle = self.kernel.handle(target)?;
        let Some(link) = handle.link_by_name(ifname)? else {
            return Ok(None);
        };
        let root = handle.impairment(link.index, ifname)?;
        let Some(threshold) = handle.loss_filter(link.index, ifname)? else {
            return Ok(root);
        };
        // Loss from the classifier (kernels without netem).
        Ok(Some(crate::model::lab::Impairment {
            loss_pct: crate::kernel::bpf::percent(threshold),
            ..root.unwrap_or_default()
        }))
    }

    fn sysctl(&mut self, key: &str) -> Option<String> {
        sysctl::read(key).ok()
    }

    fn firewall_table(&mut self) -> Result<Option<Value>> {
        Ok(crate::firewall::list_table()?)
    }

    fn firewall_intact(&mut self, state: &State) -> Result<bool> {
        Ok(crate::firewall::intact(state)?)
    }

    fn foreign_forward_drops(&mut self) -> Result<Vec<String>> {
        Ok(crate::firewall::foreign_forward_drops()?)
    }

    fn file_exists(&mut self, path: &std::path::Path) -> bool {
        path.exists()
    }

    fn host_listeners(&mut self, protocol: Protocol) -> Result<Vec<HostListener>> {
        crate::kernel::sockdiag::listeners(protocol)
            .map_err(|e| crate::kernel::Error::SockDiag(e).into())
    }

    fn socket_holder(&mut self, inode: u32) -> Option<String> {
        crate::kernel::sockdiag::holder(inode)
    }
}

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

    fn firewall_table(&mut self) -> Result<Option<Value>> {
        Ok(self.firewall.clone())
    }

    fn firewall_intact(&mut self, _state: &State) -> Result<bool> {
        Ok(self.firewall_intact)
    }

    fn foreign_forward_drops(&mut self) -> Result<Vec<String>> {
        Ok(Vec::new())
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
        use crate::kernel::netlink::LinkKind;
        for (key, value) in crate::check::needed_sysctls(state) {
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
                        });
                    }
                }
            }
        }
        p
    }
}

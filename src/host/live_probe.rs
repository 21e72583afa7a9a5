//! The live machine's answers to `Probe`: netlink dumps over the sockets
//! `Live` applies plans with, namespace ids, `/proc/sys`, socket
//! diagnostics and the firewall backend's listings.

use serde_json::Value;

use super::probe::{NsState, Probe, Result};
use super::Live;
use crate::kernel::netlink::{AddressInfo, LinkInfo, RouteInfo};
use crate::kernel::{netns, sysctl};
use crate::model::ports::{HostListener, Protocol};
use crate::model::{NsRef, State};
use crate::plan::Target;

impl Probe for Live {
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
        Ok(self.handle(target)?.links()?)
    }

    fn link(&mut self, target: &Target, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self.handle(target)?.link_by_name(name)?)
    }

    fn addresses(&mut self, target: &Target) -> Result<Vec<AddressInfo>> {
        Ok(self.handle(target)?.addresses()?)
    }

    fn routes(&mut self, target: &Target) -> Result<Vec<RouteInfo>> {
        Ok(self.handle(target)?.routes()?)
    }

    fn routes_of_family(&mut self, target: &Target, v4: bool) -> Result<Vec<RouteInfo>> {
        Ok(self.handle(target)?.routes_of_family(v4)?)
    }

    fn impairment(
        &mut self,
        target: &Target,
        ifname: &str,
    ) -> Result<Option<crate::model::lab::Impairment>> {
        let handle = self.handle(target)?;
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

    fn device_sysctls(&mut self, ifname: &str) -> std::collections::BTreeMap<String, String> {
        sysctl::device_settings(ifname)
    }

    fn firewall_table(&mut self) -> Result<Option<Value>> {
        Ok(crate::firewall::list_table()?)
    }

    fn firewall_intact(&mut self, state: &State) -> Result<bool> {
        Ok(crate::firewall::intact(state)?)
    }

    fn vxlan_guard(&mut self, vni: u32) -> Result<Option<(Vec<std::net::Ipv4Addr>, bool)>> {
        Ok(crate::firewall::vxlan_guard::read(vni)?)
    }

    fn docker_forward(&mut self, v6: bool) -> Result<Option<crate::firewall::docker_user::Placed>> {
        Ok(crate::firewall::docker_user::read(v6)?)
    }

    fn foreign_forward_drops(&mut self) -> Result<Vec<crate::firewall::rules::ForeignDrop>> {
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

    fn source_towards(&mut self, dest: std::net::SocketAddr) -> std::io::Result<std::net::IpAddr> {
        crate::kernel::source_towards(dest)
    }

    fn namespaces(&mut self) -> Result<Vec<String>> {
        Ok(netns::list()?)
    }

    fn route_get(
        &mut self,
        target: &Target,
        dst: std::net::IpAddr,
    ) -> Result<Option<crate::kernel::netlink::RouteLookup>> {
        Ok(self.handle(target)?.route_get(dst)?)
    }

    fn ruleset(&mut self) -> Result<serde_json::Value> {
        Ok(crate::firewall::ruleset()?)
    }

    fn listening(&mut self, target: &Target, protocol: Protocol, port: u16) -> Result<bool> {
        let listeners = match target {
            Target::Host => crate::kernel::sockdiag::listeners(protocol),
            Target::Ns(ns) => {
                let fd = netns::open(ns)?;
                netns::in_netns(std::os::fd::AsFd::as_fd(&fd), &ns.to_string(), || {
                    crate::kernel::sockdiag::listeners(protocol)
                })?
            }
        }
        .map_err(crate::kernel::Error::SockDiag)?;
        Ok(listeners.iter().any(|l| l.port == port))
    }

    fn counters(&mut self, target: &Target) -> Result<Vec<(String, u64, u64)>> {
        Ok(self.handle(target)?.counters()?)
    }

    fn send_probe(
        &mut self,
        ns: Option<&NsRef>,
        src: std::net::IpAddr,
        dst: std::net::SocketAddr,
        l4proto: u8,
    ) -> Result<(
        crate::kernel::nftrace::Outcome,
        Vec<crate::kernel::nftrace::Event>,
    )> {
        crate::kernel::nftrace::probe(ns, src, dst, l4proto)
            .map_err(|e| crate::kernel::Error::Probe(e).into())
    }

    fn lan_probe(
        &mut self,
        ifname: &str,
        addrs: &[std::net::IpAddr],
        wait: std::time::Duration,
    ) -> Result<Vec<crate::model::lan::LanHolder>> {
        let host = self.handle(&Target::Host)?;
        let link = host
            .link_by_name(ifname)?
            .ok_or_else(|| crate::kernel::Error::NoSuchLink {
                target: "host".into(),
                ifname: ifname.to_string(),
            })?;
        let mac = link.mac.unwrap_or_default();
        Ok(
            crate::kernel::dad::probe(ifname, link.index, mac, addrs, wait)
                .map_err(crate::kernel::Error::from)?,
        )
    }

    fn kind_supported(&mut self, kind: &str) -> Result<bool> {
        Ok(self.handle(&Target::Host)?.kind_supported(kind)?)
    }

    fn bridge_ports(&mut self) -> Result<Vec<LinkInfo>> {
        Ok(self.handle(&Target::Host)?.bridge_ports()?)
    }

    fn peers(&mut self, vxlan: &str) -> Result<Vec<crate::model::overlay::Peer>> {
        let host = self.handle(&Target::Host)?;
        match host.link_by_name(vxlan)? {
            Some(dev) => Ok(host.peers(dev.index)?),
            None => Ok(Vec::new()),
        }
    }
}

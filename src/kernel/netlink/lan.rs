//! Links on the LAN: macvlan interfaces on a host interface, host
//! interfaces moved between namespaces, and asking the kernel whether it
//! knows a kind of link.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage,
    MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::{Ctx, Handle, Result};
use crate::model::lan::MacvlanMode as Mode;

/// A macvlan interface to create.
pub struct MacvlanSpec<'a> {
    pub name: &'a str,
    /// The host interface it is on (its index in this handle's namespace).
    pub parent: u32,
    pub mode: Mode,
    /// Where it is made; this handle's namespace when `None`.
    pub netns: Option<BorrowedFd<'a>>,
    pub mtu: Option<u32>,
    pub group: Option<u32>,
}

fn kernel_mode(mode: Mode) -> MacVlanMode {
    match mode {
        Mode::Bridge => MacVlanMode::Bridge,
        Mode::Private => MacVlanMode::Private,
        Mode::Vepa => MacVlanMode::Vepa,
        Mode::Passthru => MacVlanMode::Passthrough,
    }
}

impl Handle {
    /// Creates a macvlan interface on `spec.parent`, down; made directly in
    /// its namespace (the parent index is read in this handle's).
    pub fn create_macvlan(&mut self, spec: &MacvlanSpec) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.to_string()));
        msg.attributes.push(LinkAttribute::Link(spec.parent));
        if let Some(fd) = &spec.netns {
            msg.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(group) = spec.group {
            msg.attributes.push(LinkAttribute::Group(group));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::MacVlan),
            NlLinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(kernel_mode(
                spec.mode,
            ))])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "creating macvlan",
                target: spec.name,
            },
        )
    }

    /// Moves link `index` into the namespace of `netns`, renamed `new_name`
    /// there, in one request.
    pub fn move_link(
        &mut self,
        index: u32,
        name: &str,
        netns: BorrowedFd,
        new_name: &str,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        msg.attributes
            .push(LinkAttribute::IfName(new_name.to_string()));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            Ctx {
                op: "moving link",
                target: name,
            },
        )
    }

    pub fn set_mtu(&mut self, index: u32, name: &str, mtu: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            Ctx {
                op: "setting MTU of",
                target: name,
            },
        )
    }

    /// Whether the kernel knows links of `kind` (`ipvlan`, `vlan`): asks
    /// it to create one with no lower device, which a known kind refuses
    /// with EINVAL and an unknown one with EOPNOTSUPP. Nothing is made.
    pub fn kind_supported(&mut self, kind: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName("nsnet-probe".to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(
                InfoKind::Other(kind.to_string()),
            )]));
        let result = self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Ctx {
                op: "asking the kernel about link kind",
                target: kind,
            },
        );
        match result {
            Ok(()) => {
                // Made after all: take it away again.
                if let Some(l) = self.link_by_name("nsnet-probe")? {
                    self.delete_link(l.index, "nsnet-probe")?;
                }
                Ok(true)
            }
            Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Ok(false),
            // Not allowed to ask (not root): no answer.
            Err(e) if matches!(e.errno(), Some(libc::EPERM | libc::EACCES)) => Err(e),
            Err(e) if e.errno().is_some() => Ok(true),
            Err(e) => Err(e),
        }
    }
}

//! Network drivers: what differs between kinds of network, behind one
//! trait, and a factory keyed by the network's driver (netavark's
//! `NetworkDriver` and `get_network_driver` are the model). `plan::network`
//! plans what every network has and asks the driver for the rest; `check`
//! asks it which devices must be up. A new kind of network is a new file
//! here and a variant of `model::DriverKind`, not branches in the bridge's
//! planner.

mod bridge;
pub mod lan;
mod overlay;

pub use bridge::Bridge;
pub use overlay::{check_overlay, Overlay};

use super::attach::NsFacts;
use super::network::HostFacts;
use super::Op;
use crate::model::{Attachment, CreateRequest, DriverKind, Network, Rejection, State};

/// A device a driver makes that must be there and up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// The tunnel device of a network across hosts.
    Tunnel { name: String },
    /// The host interface a macvlan network is on.
    Parent { name: String },
    /// The host's own interface on a macvlan network, with its addresses.
    HostAccess {
        name: String,
        addresses: Vec<ipnet::IpNet>,
    },
}

pub trait NetworkDriver: Sync {
    /// The driver's own checks of a create request against the record and
    /// the host, before the ones every network gets (subnets, modes).
    fn validate(
        &self,
        state: &State,
        req: &CreateRequest,
        host: &HostFacts,
    ) -> Result<(), Rejection>;
    /// The steps that make the network's devices; may record on `network`
    /// what the host had before (an adopted bridge's settings).
    fn setup(&self, network: &mut Network, host: &HostFacts, mac: [u8; 6]) -> Vec<Op>;
    /// The host links the driver made: removed with the network's link
    /// group, in one request with its attachments' host ends.
    fn links(&self, network: &Network) -> Vec<String>;
    /// What removal gives back that it does not delete (an adopted
    /// bridge's addresses, settings and state).
    fn release(&self, network: &Network) -> Vec<Op>;
    /// The devices `check` expects there and up, beyond the bridge.
    fn devices(&self, network: &Network) -> Vec<Device>;
    /// The steps that give an attachment its interface and configure it,
    /// once its namespace exists.
    fn connect(
        &self,
        network: &Network,
        att: &Attachment,
        facts: &NsFacts,
        mac: Option<[u8; 6]>,
    ) -> Vec<Op>;
    /// The steps that take the interfaces of `leaving` away, before the
    /// `doomed` namespaces (those nsnet made for them) are deleted.
    fn disconnect(&self, network: &Network, leaving: &[&Attachment], doomed: &[String]) -> Vec<Op>;
}

/// The driver of a kind of network.
pub fn of(kind: DriverKind) -> &'static dyn NetworkDriver {
    match kind {
        DriverKind::Bridge => &Bridge,
        DriverKind::Overlay => &Overlay,
        DriverKind::Macvlan => &lan::Macvlan,
        DriverKind::HostDevice => &lan::HostDeviceDriver,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::network::{plan_create, plan_remove};

    fn request(name: &str) -> CreateRequest {
        CreateRequest::for_test(name, &["10.7.0.0/24"])
    }

    #[test]
    fn a_bridge_network_is_made_and_removed_by_the_bridge_driver() {
        let req = request("web");
        assert_eq!(req.driver(), DriverKind::Bridge);
        let (s, ops) = plan_create(&State::default(), &req, &HostFacts::default()).unwrap();
        let net = &s.networks["web"];
        assert_eq!(net.driver(), DriverKind::Bridge);
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::CreateBridge { name, .. } if *name == net.bridge)));
        assert!(!ops.iter().any(|o| matches!(o, Op::CreateVxlan { .. })));
        assert_eq!(
            of(net.driver()).links(net),
            std::slice::from_ref(&net.bridge)
        );
        assert!(of(net.driver()).devices(net).is_empty());
        let (_, ops) = plan_remove(&s, "web", false).unwrap();
        assert!(ops.iter().any(
            |o| matches!(o, Op::DeleteLinkGroup { names, .. } if *names == [net.bridge.clone()])
        ));
    }

    #[test]
    fn an_adopted_bridge_is_given_back_not_deleted() {
        let host = HostFacts {
            existing_link: Some(crate::plan::network::ExistingLink {
                name: "br-x".into(),
                kind: "bridge".into(),
                mac: Some([2, 0, 0, 0, 0, 7]),
                up: false,
            }),
            ..HostFacts::default()
        };
        let req = CreateRequest {
            bridge: Some("br-x".into()),
            ..request("web")
        };
        let (s, _) = plan_create(&State::default(), &req, &host).unwrap();
        let net = &s.networks["web"];
        assert!(of(net.driver()).links(net).is_empty());
        let given_back = of(net.driver()).release(net);
        assert!(given_back
            .iter()
            .any(|o| matches!(o, Op::LinkDown { ifname, .. } if ifname == "br-x")));
    }
}

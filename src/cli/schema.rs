//! The JSON output schema, `nsnet/1`: one shape for networks, attachments
//! and namespaces, used by every listing (`network ls|inspect|create`,
//! `connect`, `show`). It says what a user configured and what nsnet made,
//! and keeps the record's internals (link groups, adopted-bridge
//! bookkeeping, old sysctl values) out. Fields are only added within a
//! version; `schema` names it in every network object.

use serde::Serialize;

use nsnet::model::ports::PortMapping;
use nsnet::model::{Attachment, Network};

pub const SCHEMA: &str = "nsnet/1";

#[derive(Serialize)]
pub struct SubnetView {
    pub cidr: String,
    pub gateway: String,
}

#[derive(Serialize)]
pub struct GatewayModes {
    pub ipv4: String,
    pub ipv6: String,
}

#[derive(Serialize)]
pub struct NetworkView {
    pub schema: &'static str,
    pub name: String,
    pub bridge: String,
    pub bridge_mac: String,
    /// The bridge existed before the network (it stays after `rm`).
    pub bridge_adopted: bool,
    pub subnets: Vec<SubnetView>,
    pub internal: bool,
    pub gateway_mode: GatewayModes,
    pub isolate: bool,
    pub icc: bool,
    pub trusted_interfaces: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The topology file whose `up` made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_file: Option<String>,
    pub attachments: Vec<AttachmentView>,
    /// `show` only: whether the kernel has the bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// This host's part of a network across hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayView>,
    /// Docker made it: its network ID and its endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerView>,
    /// A network on the LAN (driver macvlan or host-device): its host
    /// interface and settings, as recorded (`bridge` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lan: Option<nsnet::model::lan::Lan>,
}

#[derive(Serialize)]
pub struct DockerView {
    pub id: String,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Serialize)]
pub struct EndpointView {
    pub id: String,
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

#[derive(Serialize)]
pub struct OverlayView {
    pub cluster_subnet: String,
    pub host_subnet_len: u8,
    pub vni: u32,
    pub port: u16,
    pub etcd: Vec<String>,
    /// TLS files and user (paths and a name; never a key or password).
    #[serde(skip_serializing_if = "nsnet::model::overlay::EtcdAccess::is_empty")]
    pub etcd_access: nsnet::model::overlay::EtcdAccess,
    /// Another host claims this host's subnet: the network is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<nsnet::model::overlay::SubnetConflict>,
    pub vtep: String,
    pub underlay: String,
    pub vxlan: String,
    /// `inspect` and `show` only: the other hosts the kernel is programmed
    /// to reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerView>>,
}

#[derive(Serialize)]
pub struct PeerView {
    pub subnet: String,
    pub vtep: String,
    pub vtep_mac: String,
}

impl PeerView {
    pub fn of(p: &nsnet::model::overlay::Peer) -> PeerView {
        PeerView {
            subnet: p.subnet.to_string(),
            vtep: p.vtep.to_string(),
            vtep_mac: nsnet::model::names::format_mac(&p.mac),
        }
    }
}

#[derive(Serialize)]
pub struct CniView {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Serialize)]
pub struct AttachmentView {
    pub namespace: String,
    pub ifname: String,
    pub host_ifname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub addresses: Vec<String>,
    pub ports: Vec<PortMapping>,
    /// nsnet created the namespace and deletes it with its last attachment.
    pub namespace_owned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniView>,
    /// The Docker endpoint whose container has the other end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_endpoint: Option<String>,
    /// `show` only: whether the kernel has the host end, and on the bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_bridge: Option<bool>,
}

impl AttachmentView {
    pub fn of(a: &Attachment) -> AttachmentView {
        AttachmentView {
            namespace: a.namespace.to_string(),
            ifname: a.ifname.clone(),
            host_ifname: a.host_ifname.clone(),
            mac: a.mac.clone(),
            addresses: a.addresses.iter().map(|n| n.to_string()).collect(),
            ports: a.ports.clone(),
            namespace_owned: a.namespace_created,
            topology_file: a.owner.clone(),
            cni: a.cni.as_ref().map(|k| CniView {
                container_id: k.container_id.clone(),
                ifname: k.ifname.clone(),
            }),
            docker_endpoint: a.docker.clone(),
            present: None,
            on_bridge: None,
        }
    }
}

impl NetworkView {
    pub fn of(n: &Network) -> NetworkView {
        NetworkView {
            schema: SCHEMA,
            name: n.name.clone(),
            bridge: n.bridge.clone(),
            bridge_mac: n.bridge_mac.clone(),
            bridge_adopted: n.bridge_adopted,
            subnets: n
                .subnets
                .iter()
                .map(|s| SubnetView {
                    cidr: s.cidr.to_string(),
                    gateway: s.gateway.to_string(),
                })
                .collect(),
            internal: n.internal,
            gateway_mode: GatewayModes {
                ipv4: n.gateway_mode.to_string(),
                ipv6: n.gateway_mode_v6.to_string(),
            },
            isolate: n.isolate,
            icc: n.icc,
            trusted_interfaces: n.trusted_interfaces.clone(),
            mtu: n.mtu,
            topology_file: n.owner.clone(),
            attachments: n
                .attachments
                .iter()
                .map(|a| AttachmentView::of(a))
                .collect(),
            present: None,
            lan: n.lan.clone(),
            overlay: n.overlay.as_ref().map(|o| OverlayView {
                cluster_subnet: o.config.subnet.to_string(),
                host_subnet_len: o.config.host_subnet_len,
                vni: o.config.vni,
                port: o.config.port,
                etcd: o.etcd.clone(),
                etcd_access: o.access.clone(),
                conflict: o.conflict.clone(),
                vtep: o.vtep.to_string(),
                underlay: o.underlay.clone(),
                vxlan: o.vxlan.clone(),
                peers: None,
            }),
            docker: n.docker.as_ref().map(|d| DockerView {
                id: d.id.clone(),
                endpoints: d
                    .endpoints
                    .iter()
                    .map(|(id, e)| EndpointView {
                        id: id.clone(),
                        addresses: e.addresses.iter().map(|a| a.to_string()).collect(),
                        mac: e.mac.clone(),
                    })
                    .collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsnet::api::preview;
    use nsnet::model::{CniKey, CreateRequest, NsRef, State};

    /// A network as plans make it, with a CLI attachment and a CNI one.
    fn network() -> Network {
        let req = CreateRequest {
            subnets: vec!["10.0.0.0/24".parse().unwrap(), "fd00::/64".parse().unwrap()],
            icc: false,
            ..CreateRequest::named("web")
        };
        let s = preview::create(&State::default(), &req).unwrap();
        let mut c = nsnet::model::ConnectRequest::new("web", NsRef::Named("front".into()));
        c.publish = vec!["8080:80".parse().unwrap()];
        let s = preview::connect(&s, &c, false).unwrap();
        let mut c =
            nsnet::model::ConnectRequest::new("web", NsRef::Path("/run/netns/cni-1".into()));
        c.cni = Some(CniKey {
            container_id: "abc".into(),
            ifname: "eth0".into(),
        });
        let s = preview::connect(&s, &c, true).unwrap();
        s.networks["web"].clone()
    }

    #[test]
    fn the_network_schema() {
        insta::assert_json_snapshot!(NetworkView::of(&network()));
    }

    #[test]
    fn internals_stay_out() {
        let text = serde_json::to_string(&NetworkView::of(&network())).unwrap();
        for internal in [
            "link_group",
            "preexisting_gateways",
            "bridge_brought_up",
            "bridge_sysctls",
            "\"owner\"",
            "\"cni\":null",
            "namespace_created",
        ] {
            assert!(!text.contains(internal), "{internal} in {text}");
        }
    }
}

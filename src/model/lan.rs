//! Networks on the host's LAN: namespaces with interfaces of their own on
//! a host interface (driver `macvlan`), or a whole host interface moved
//! into a namespace (driver `host-device`). No bridge, no NAT, no
//! published ports: the LAN routes to them as to any other machine. The
//! values here are pure; `plan::driver::lan` plans them and `kernel::dad`
//! probes the LAN for addresses in use.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Rejection;

/// How long a connect waits for an answer to its duplicate address probes
/// (ARP, RFC 5227; Neighbour Solicitation, RFC 4862), in milliseconds: hosts on a wired LAN answer within a millisecond, and
/// a sleeping Wi-Fi client within ~100 ms. The RFC's own PROBE_WAIT,
/// PROBE_NUM and PROBE_MAX (1 s + 3 probes 1-2 s apart) are for a host
/// configuring itself with no record of the LAN; nsnet probes addresses
/// its record says are free. 0 turns probing off.
pub const DEFAULT_PROBE_MS: u32 = 200;

/// Addresses probed at once when nsnet picks one: the lowest free ones of
/// the pool, so that one wait finds a free address unless this many in a
/// row are taken on the LAN.
pub const PROBE_BATCH: usize = 8;

/// A macvlan interface's mode (the kernel's `MACVLAN_MODE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// Interfaces of the network reach each other inside the host.
    #[default]
    Bridge,
    /// They cannot reach each other at all.
    Private,
    /// They reach each other only through the LAN's switch (which must
    /// send frames back out of the port they came in on).
    Vepa,
    /// One interface takes over the parent (its MAC included).
    Passthru,
}

impl MacvlanMode {
    pub const NAMES: [&'static str; 4] = ["bridge", "private", "vepa", "passthru"];
}

impl fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = match self {
            MacvlanMode::Bridge => 0,
            MacvlanMode::Private => 1,
            MacvlanMode::Vepa => 2,
            MacvlanMode::Passthru => 3,
        };
        f.write_str(Self::NAMES[i])
    }
}

impl FromStr for MacvlanMode {
    type Err = Rejection;

    fn from_str(s: &str) -> Result<Self, Rejection> {
        match s {
            "bridge" => Ok(MacvlanMode::Bridge),
            "private" => Ok(MacvlanMode::Private),
            "vepa" => Ok(MacvlanMode::Vepa),
            "passthru" => Ok(MacvlanMode::Passthru),
            _ => Err(Rejection::Unparsable {
                what: "macvlan mode",
                value: s.to_string(),
                expected: "expected bridge, private, vepa or passthru",
            }),
        }
    }
}

/// The host's own interface on a macvlan network (`--host-access`): the
/// kernel passes nothing between a macvlan interface and its parent, so
/// the host reaches its namespaces through a macvlan interface of its own
/// on the same parent, with an address of the subnet (as a host route:
/// the host's other traffic to the LAN keeps its way) and a route to each
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAccess {
    pub ifname: String,
    /// Its addresses, one per subnet of the network, as /32 and /128.
    pub addresses: Vec<IpNet>,
}

/// A macvlan network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Macvlan {
    /// The host interface on the LAN.
    pub parent: String,
    pub mode: MacvlanMode,
    /// Addresses nsnet hands out, within the subnet (default: all of it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_access: Option<HostAccess>,
    /// How long a probe for an address waits for an answer (ms).
    pub probe_ms: u32,
}

/// A host-device network: one host interface, moved into the namespace
/// that connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDevice {
    pub device: String,
}

/// What a LAN network is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lan {
    Macvlan(Macvlan),
    HostDevice(HostDevice),
}

impl Lan {
    /// The host interface the network is on (the parent, or the device).
    pub fn host_interface(&self) -> &str {
        match self {
            Lan::Macvlan(m) => &m.parent,
            Lan::HostDevice(d) => &d.device,
        }
    }

    pub fn macvlan(&self) -> Option<&Macvlan> {
        match self {
            Lan::Macvlan(m) => Some(m),
            Lan::HostDevice(_) => None,
        }
    }
}

/// `network create --driver macvlan|host-device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanRequest {
    Macvlan {
        parent: String,
        mode: MacvlanMode,
        ip_ranges: Vec<IpNet>,
        host_access: bool,
        probe_ms: u32,
    },
    HostDevice {
        device: String,
    },
}

/// The range of `ranges` (`--ip-range`, one per family at most) that lies
/// in subnet `cidr`.
pub fn range_in<'a>(ranges: &'a [IpNet], cidr: &IpNet) -> Option<&'a IpNet> {
    ranges.iter().find(|r| cidr.contains(*r))
}

impl LanRequest {
    /// Whether the host gets an interface on the LAN (`--host-access`).
    pub fn host_access(&self) -> bool {
        matches!(
            self,
            LanRequest::Macvlan {
                host_access: true,
                ..
            }
        )
    }

    pub fn host_interface(&self) -> &str {
        match self {
            LanRequest::Macvlan { parent, .. } => parent,
            LanRequest::HostDevice { device } => device,
        }
    }
}

/// A host interface as it was before nsnet moved it into a namespace:
/// what a move loses (addresses, up state) and what a namespace's user may
/// change (name, MAC, MTU), all put back when it returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedDevice {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: u32,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    /// The host's routes via a gateway through it (a move takes them
    /// along with its addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<DeviceRoute>,
    /// Its own settings that differ from the host's defaults (a move
    /// resets them), by key without the interface (`ipv6/conf/accept_ra`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctls: std::collections::BTreeMap<String, String>,
}

/// A route through a host device via a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRoute {
    pub destination: IpNet,
    pub gateway: IpAddr,
    /// Who made it (RTPROT_*); records from before it was kept: boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// Someone on the LAN answered for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanHolder {
    pub address: IpAddr,
    pub mac: [u8; 6],
}

/// Whether a parent name is an 802.1q sub-interface (`eth0.10`): Docker
/// creates those; nsnet needs the kernel's VLAN support for it.
pub fn vlan_parent(name: &str) -> Option<(&str, u16)> {
    let (base, id) = name.rsplit_once('.')?;
    let id: u16 = id.parse().ok()?;
    (!base.is_empty() && (1..4095).contains(&id)).then_some((base, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_alike() {
        for name in MacvlanMode::NAMES {
            let m: MacvlanMode = name.parse().unwrap();
            assert_eq!(m.to_string(), name);
        }
        let e = "bridged".parse::<MacvlanMode>().unwrap_err();
        assert!(e.to_string().contains("\"bridged\""), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn vlan_parents_are_told_apart() {
        assert_eq!(vlan_parent("eth0.10"), Some(("eth0", 10)));
        assert_eq!(vlan_parent("eth0"), None);
        assert_eq!(vlan_parent("br.lan"), None);
        assert_eq!(vlan_parent("eth0.4095"), None);
        assert_eq!(vlan_parent(".5"), None);
    }
}

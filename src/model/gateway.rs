//! Gateway modes, Docker's names for how a network meets the world beyond
//! its bridge, per address family.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayMode {
    /// Masquerade, and drop packets routed to the namespaces' addresses
    /// from anywhere but the bridge (direct-access protection).
    #[default]
    Nat,
    /// Masquerade without direct-access protection (nsnet before 0.2).
    NatUnprotected,
    /// No masquerade: a namespace's address is reachable directly, but only
    /// on its published container ports and for ICMP echo.
    Routed,
    /// Internal networks only: the bridge gets no address at all.
    Isolated,
}

impl GatewayMode {
    pub const ALL: [GatewayMode; 4] = [
        GatewayMode::Nat,
        GatewayMode::NatUnprotected,
        GatewayMode::Routed,
        GatewayMode::Isolated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::NatUnprotected => "nat-unprotected",
            GatewayMode::Routed => "routed",
            GatewayMode::Isolated => "isolated",
        }
    }

    pub fn masquerades(self) -> bool {
        matches!(self, GatewayMode::Nat | GatewayMode::NatUnprotected)
    }

    /// Packets routed to the namespaces from outside are filtered.
    pub fn filters_inbound(self) -> bool {
        matches!(self, GatewayMode::Nat | GatewayMode::Routed)
    }
}

impl fmt::Display for GatewayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GatewayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<GatewayMode, String> {
        GatewayMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "invalid gateway mode {s:?}: expected one of {}",
                    GatewayMode::ALL.map(|m| m.as_str()).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in GatewayMode::ALL {
            assert_eq!(m.as_str().parse::<GatewayMode>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert!("bridge"
            .parse::<GatewayMode>()
            .unwrap_err()
            .contains("nat-unprotected"));
    }
}

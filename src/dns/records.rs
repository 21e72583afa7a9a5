//! The names each network resolves, built from the record (pure): per
//! network, names (the namespace's, its aliases; lower case) to addresses
//! and addresses back to names, and which subnets a querying address
//! belongs to. Only members of a network get its answers.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::State;

/// The names of one network.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Zone {
    pub network: String,
    /// Lower case, without a trailing dot.
    pub domain: String,
    pub subnets: Vec<IpNet>,
    /// Name (lower case) → addresses.
    pub names: HashMap<String, Vec<IpAddr>>,
    /// Address → the namespace's name.
    pub reverse: HashMap<IpAddr, String>,
    /// Where names of no member go; `None`: not forwarded (internal).
    pub upstreams: Option<Vec<IpAddr>>,
    /// Who may ask: `None`, any address of the subnets (a bridge's, which
    /// nothing else reaches); on a LAN, which other machines share, only
    /// the namespaces' own addresses and the host's there.
    pub members: Option<Vec<IpAddr>>,
}

/// Whether a network is served: DNS on, and an address to serve on (an
/// isolated network's bridge has none, nor a macvlan network without
/// host access).
fn served(n: &crate::model::Network) -> bool {
    !n.dns_addresses().is_empty()
}

/// The addresses a server must listen on for `state`, without building
/// the zones (every changing command asks).
pub fn listen_addresses(state: &State) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = state
        .networks
        .values()
        .flat_map(crate::model::Network::dns_addresses)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every DNS-enabled network's zone.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Table {
    pub zones: Vec<Zone>,
}

impl Table {
    pub fn from_state(state: &State) -> Table {
        let zones = state
            .networks
            .values()
            .filter(|n| served(n))
            .map(|n| {
                let mut zone = Zone {
                    network: n.name.clone(),
                    domain: n.domain().trim_end_matches('.').to_ascii_lowercase(),
                    subnets: n.subnets.iter().map(|s| s.cidr).collect(),
                    upstreams: (!n.internal).then(|| n.dns_servers.clone()),
                    members: n.lan.is_some().then(|| {
                        n.attachments
                            .addresses()
                            .into_iter()
                            .chain(n.dns_addresses())
                            .collect()
                    }),
                    ..Zone::default()
                };
                for a in &n.attachments {
                    let addrs: Vec<IpAddr> = a.addresses.iter().map(|x| x.addr()).collect();
                    // A namespace known by its path (a container's) is named
                    // by its aliases alone: the first is its reverse name.
                    let names: Vec<String> = a
                        .namespace
                        .name()
                        .into_iter()
                        .chain(a.aliases.iter().map(String::as_str))
                        .map(str::to_ascii_lowercase)
                        .collect();
                    let Some(first) = names.first() else {
                        continue;
                    };
                    for addr in &addrs {
                        zone.reverse.insert(*addr, first.clone());
                    }
                    for name in &names {
                        zone.names
                            .entry(name.clone())
                            .or_default()
                            .extend(addrs.iter().copied());
                    }
                }
                zone
            })
            .collect();
        Table { zones }
    }

    /// The zones whose members `source` is.
    pub fn zones_of(&self, source: IpAddr) -> impl Iterator<Item = &Zone> {
        self.zones.iter().filter(move |z| match &z.members {
            Some(members) => members.contains(&source),
            None => z.subnets.iter().any(|s| s.contains(&source)),
        })
    }
}

impl Zone {
    /// The addresses of `name` (lower case, no trailing dot): a member's
    /// name or alias, bare or under the zone's domain. `None` when the name
    /// is not this zone's to answer (it is for upstream).
    pub fn lookup(&self, name: &str) -> Option<Option<&Vec<IpAddr>>> {
        let bare = match name.strip_suffix(&self.domain) {
            Some("") => return Some(None),
            Some(rest) => rest.strip_suffix('.')?,
            None if !name.contains('.') => name,
            None => return None,
        };
        Some(self.names.get(bare))
    }
}

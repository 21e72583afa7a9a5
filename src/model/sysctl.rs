//! The kernel parameters nsnet's plans set, by key under `/proc/sys`.
//! Only names: reading and writing them is `kernel::sysctl`.

/// IPv4 forwarding between interfaces, needed for traffic to leave a bridge.
pub const IPV4_FORWARD: &str = "net/ipv4/ip_forward";
/// IPv6 forwarding on all interfaces.
pub const IPV6_FORWARD: &str = "net/ipv6/conf/all/forwarding";

/// Lets a bridge route packets whose source is 127.0.0.0/8: a host
/// connection to a port published on 127.0.0.1 leaves with that source
/// after DNAT, until masquerade rewrites it.
pub fn route_localnet(ifname: &str) -> String {
    format!("net/ipv4/conf/{ifname}/route_localnet")
}

/// Which ARP requests an interface answers (1: only for its own
/// addresses).
pub fn arp_ignore(ifname: &str) -> String {
    format!("net/ipv4/conf/{ifname}/arp_ignore")
}

/// Duplicate address detection of an interface's IPv6 addresses.
pub fn accept_dad(ifname: &str) -> String {
    format!("net/ipv6/conf/{ifname}/accept_dad")
}

/// br_netfilter: bridged IPv4 and IPv6 frames pass the inet hooks (the
/// forward chain sees traffic between two ports of one bridge).
pub const BRIDGE_CALL_IPTABLES: &str = "net/bridge/bridge-nf-call-iptables";
pub const BRIDGE_CALL_IP6TABLES: &str = "net/bridge/bridge-nf-call-ip6tables";

/// The sysctls the networks need, with the value they need.
pub fn needed(state: &super::State) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if state.networks.values().any(|n| n.forwards()) {
        out.push((IPV4_FORWARD, "1"));
    }
    if state
        .networks
        .values()
        .any(|n| n.forwards() && n.subnet_v6().is_some())
    {
        out.push((IPV6_FORWARD, "1"));
    }
    out
}

//! Address management: which addresses of a subnet may be handed out, the
//! next free one, and the choice of a free subnet. Pure functions over the
//! recorded leases; the state store makes them durable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// The addresses leased on a network, sorted: what the allocator walks and
/// what a requested address is checked against. Sorted vectors of numbers,
/// one per family, rather than a tree of addresses: built once per command
/// from a thousand leases (which come mostly in order already), they cost a
/// sort of integers instead of a thousand node insertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    v4: Vec<u32>,
    v6: Vec<u128>,
}

impl Leases {
    pub fn contains(&self, addr: &IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.binary_search(&u32::from(*a)).is_ok(),
            IpAddr::V6(a) => self.v6.binary_search(&u128::from(*a)).is_ok(),
        }
    }

    /// Adds `addr`; false when it was leased already.
    pub fn insert(&mut self, addr: IpAddr) -> bool {
        fn sorted_insert<T: Ord>(v: &mut Vec<T>, x: T) -> bool {
            match v.binary_search(&x) {
                Ok(_) => false,
                Err(at) => {
                    v.insert(at, x);
                    true
                }
            }
        }
        match addr {
            IpAddr::V4(a) => sorted_insert(&mut self.v4, u32::from(a)),
            IpAddr::V6(a) => sorted_insert(&mut self.v6, u128::from(a)),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leases of one family from `from` up, in order, as numbers.
    fn upwards_of(&self, v4: bool, from: u128) -> impl Iterator<Item = u128> + '_ {
        let (v4s, v6s) = if v4 {
            let from = u32::try_from(from).unwrap_or(u32::MAX);
            (&self.v4[self.v4.partition_point(|a| *a < from)..], &[][..])
        } else {
            (&[][..], &self.v6[self.v6.partition_point(|a| *a < from)..])
        };
        v4s.iter()
            .map(|a| u128::from(*a))
            .chain(v6s.iter().copied())
    }
}

impl FromIterator<IpAddr> for Leases {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> Self {
        let mut leases = Leases::default();
        for addr in iter {
            match addr {
                IpAddr::V4(a) => leases.v4.push(a.into()),
                IpAddr::V6(a) => leases.v6.push(a.into()),
            }
        }
        leases.v4.sort_unstable();
        leases.v4.dedup();
        leases.v6.sort_unstable();
        leases.v6.dedup();
        leases
    }
}

/// One subnet of a network and its gateway address (on the bridge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub cidr: IpNet,
    pub gateway: IpAddr,
}

impl Subnet {
    /// The gateway with the subnet's prefix, as the bridge carries it.
    pub fn gateway_net(&self) -> IpNet {
        IpNet::new(self.gateway, self.cidr.prefix_len()).expect("prefix of a valid subnet")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("address {addr} is outside subnet {subnet}")]
    OutsideSubnet { addr: IpAddr, subnet: IpNet },
    #[error("address {addr} is the network address of {subnet}")]
    NetworkAddress { addr: IpAddr, subnet: IpNet },
    #[error("address {addr} is the broadcast address of {subnet}")]
    BroadcastAddress { addr: IpAddr, subnet: IpNet },
    #[error("address {addr} is the gateway of {subnet}")]
    Gateway { addr: IpAddr, subnet: IpNet },
    #[error("address {addr} is already in use")]
    InUse { addr: IpAddr },
    #[error("subnet {subnet} has no free address left")]
    Exhausted { subnet: IpNet },
    #[error("--ip-range {range} has no free address left")]
    RangeExhausted { range: IpNet },
    #[error("subnet {subnet} is too small: it has no address for hosts")]
    TooSmall { subnet: IpNet },
}

/// The first and last address a host may use: IPv4 excludes the network and
/// broadcast addresses (except in /31 and /32), IPv6 excludes the
/// subnet-router anycast address (the all-zero host part).
fn host_bounds(subnet: &IpNet) -> Option<(u128, u128)> {
    match subnet {
        IpNet::V4(n) => {
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            match n.prefix_len() {
                32 => Some((lo as u128, lo as u128)),
                31 => Some((lo as u128, hi as u128)),
                _ => Some((lo as u128 + 1, hi as u128 - 1)),
            }
        }
        IpNet::V6(n) => {
            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
            if n.prefix_len() == 128 {
                Some((lo, lo))
            } else {
                Some((lo + 1, hi))
            }
        }
    }
}

fn to_ip(subnet: &IpNet, v: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(*a) as u128,
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// The CIDR block of `subnet` whose addresses run from `start` to `end`,
/// counting its network and broadcast addresses or not: how a lease range
/// such as podman's (`--ip-range 192.0.2.64/26` arrives as 192.0.2.65 to
/// 192.0.2.126) becomes nsnet's `--ip-range`. `None` when no block has
/// those ends.
pub fn range_block(subnet: &IpNet, start: IpAddr, end: IpAddr) -> Option<IpNet> {
    if !subnet.contains(&start) || !subnet.contains(&end) {
        return None;
    }
    (subnet.prefix_len()..=subnet.max_prefix_len())
        .filter_map(|len| IpNet::new(start, len).ok().map(|b| b.trunc()))
        .find(|block| {
            let (lo, hi) = (to_u128(&block.network()), to_u128(&block.broadcast()));
            let (s, e) = (to_u128(&start), to_u128(&end));
            (s == lo || (s == lo + 1 && hi > lo + 1)) && (e == hi || (e + 1 == hi && hi > lo + 1))
        })
}

/// The smallest CIDR block that holds `start` and `end` (of one family).
pub fn covering_block(start: &IpAddr, end: &IpAddr) -> IpNet {
    let max = if start.is_ipv4() { 32 } else { 128 };
    (0..=max)
        .rev()
        .filter_map(|len| IpNet::new(*start, len).ok().map(|b| b.trunc()))
        .find(|b| b.contains(end))
        .expect("a /0 holds every address of its family")
}

/// The default gateway: the first host address.
pub fn default_gateway(subnet: &IpNet) -> Result<IpAddr, IpamError> {
    let (lo, hi) = host_bounds(subnet).ok_or(IpamError::TooSmall { subnet: *subnet })?;
    if lo >= hi {
        // A gateway plus at least one host are needed.
        return Err(IpamError::TooSmall { subnet: *subnet });
    }
    Ok(to_ip(subnet, lo))
}

/// Checks that `addr` can be a gateway of `subnet`.
pub fn check_gateway(subnet: &IpNet, addr: IpAddr) -> Result<(), IpamError> {
    check_host(subnet, addr)
}

fn check_host(subnet: &IpNet, addr: IpAddr) -> Result<(), IpamError> {
    if !subnet.contains(&addr) {
        return Err(IpamError::OutsideSubnet {
            addr,
            subnet: *subnet,
        });
    }
    let (lo, hi) = host_bounds(subnet).ok_or(IpamError::TooSmall { subnet: *subnet })?;
    let v = to_u128(&addr);
    if v < lo {
        return Err(IpamError::NetworkAddress {
            addr,
            subnet: *subnet,
        });
    }
    if v > hi {
        return Err(IpamError::BroadcastAddress {
            addr,
            subnet: *subnet,
        });
    }
    Ok(())
}

/// Checks a requested address: inside the subnet, a host address, not the
/// gateway, not leased.
pub fn check_requested(subnet: &Subnet, addr: IpAddr, used: &Leases) -> Result<(), IpamError> {
    check_host(&subnet.cidr, addr)?;
    if addr == subnet.gateway {
        return Err(IpamError::Gateway {
            addr,
            subnet: subnet.cidr,
        });
    }
    if used.contains(&addr) {
        return Err(IpamError::InUse { addr });
    }
    Ok(())
}

/// The lowest free host address. Runs in O(leases), whatever the size of
/// the subnet: it walks from the bottom and only ever skips taken addresses.
pub fn allocate(subnet: &Subnet, used: &Leases) -> Result<IpAddr, IpamError> {
    let (lo, hi) = host_bounds(&subnet.cidr).ok_or(IpamError::Exhausted {
        subnet: subnet.cidr,
    })?;
    // The leases from the bottom of the range up, walked in place.
    let v4 = subnet.cidr.addr().is_ipv4();
    let mut taken = used.upwards_of(v4, lo).take_while(|t| *t <= hi).peekable();
    let gateway = to_u128(&subnet.gateway);
    let mut candidate = lo;
    loop {
        if candidate == gateway {
            candidate += 1;
        }
        match taken.next_if(|t| *t <= candidate) {
            Some(t) if t == candidate => candidate += 1,
            Some(_) => {}
            None => break,
        }
    }
    if candidate > hi {
        return Err(IpamError::Exhausted {
            subnet: subnet.cidr,
        });
    }
    Ok(to_ip(&subnet.cidr, candidate))
}

/// Up to `n` free host addresses from the bottom of `subnet` (within
/// `range` when given): not the gateway, not leased. For pools whose
/// addresses are probed before use (LAN networks): O(n + leases).
pub fn free_addresses(
    subnet: &Subnet,
    range: Option<&IpNet>,
    used: &Leases,
    n: usize,
) -> Vec<IpAddr> {
    let Some((mut lo, mut hi)) = host_bounds(&subnet.cidr) else {
        return Vec::new();
    };
    if let Some(r) = range {
        lo = lo.max(to_u128(&r.network()));
        hi = hi.min(to_u128(&r.broadcast()));
    }
    let gateway = to_u128(&subnet.gateway);
    let mut out = Vec::new();
    let mut candidate = lo;
    while candidate <= hi && out.len() < n {
        let addr = to_ip(&subnet.cidr, candidate);
        if candidate != gateway && !used.contains(&addr) {
            out.push(addr);
        }
        candidate += 1;
    }
    out
}

/// Pools that automatic subnets come from, split into /24 and /64.
const V4_POOLS: [&str; 2] = ["172.30.0.0/16", "10.200.0.0/16"];
const V6_POOL: &str = "fd6e:736e:6574::/48";

/// The first pool subnet that overlaps none of `taken` (nsnet's networks
/// and the host's routes; default routes are left out by the caller).
pub fn pick_free_subnet(v6: bool, taken: &[IpNet]) -> Option<IpNet> {
    let overlaps = |c: &IpNet| taken.iter().any(|t| t.contains(c) || c.contains(t));
    if v6 {
        let pool: Ipv6Net = V6_POOL.parse().expect("valid pool");
        pool.subnets(64).ok()?.map(IpNet::V6).find(|c| !overlaps(c))
    } else {
        V4_POOLS.iter().find_map(|p| {
            let pool: Ipv4Net = p.parse().expect("valid pool");
            pool.subnets(24).ok()?.map(IpNet::V4).find(|c| !overlaps(c))
        })
    }
}

/// True when two subnets share any address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

#[cfg(test)]
mod tests {

    #[test]
    fn lease_ranges_become_cidr_blocks() {
        assert_eq!(
            covering_block(
                &"192.0.2.10".parse().unwrap(),
                &"192.0.2.20".parse().unwrap()
            ),
            "192.0.2.0/27".parse().unwrap()
        );
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let subnet = net("192.0.2.0/24");
        for (start, end, want) in [
            (ip("192.0.2.65"), ip("192.0.2.126"), Some("192.0.2.64/26")),
            (ip("192.0.2.64"), ip("192.0.2.127"), Some("192.0.2.64/26")),
            (ip("192.0.2.128"), ip("192.0.2.255"), Some("192.0.2.128/25")),
            (ip("192.0.2.0"), ip("192.0.2.255"), Some("192.0.2.0/24")),
            (ip("192.0.2.9"), ip("192.0.2.9"), Some("192.0.2.9/32")),
            (ip("192.0.2.10"), ip("192.0.2.20"), None),
            (ip("192.0.2.65"), ip("192.0.2.127"), Some("192.0.2.64/26")),
            (ip("198.51.100.1"), ip("192.0.2.255"), None),
        ] {
            assert_eq!(
                range_block(&subnet, start, end),
                want.map(net),
                "{start:?}-{end:?}"
            );
        }
        let v6 = net("2001:db8::/64");
        assert_eq!(
            range_block(&v6, ip("2001:db8::100"), ip("2001:db8::1ff")),
            Some(net("2001:db8::100/120"))
        );
    }

    use super::*;
    use proptest::prelude::*;

    fn subnet(c: &str) -> Subnet {
        let cidr: IpNet = c.parse().unwrap();
        Subnet {
            cidr,
            gateway: default_gateway(&cidr).unwrap(),
        }
    }

    #[test]
    fn allocation_skips_gateway_and_network_address() {
        let s = subnet("172.16.0.0/16");
        assert_eq!(s.gateway, "172.16.0.1".parse::<IpAddr>().unwrap());
        let a = allocate(&s, &Leases::default()).unwrap();
        assert_eq!(a, "172.16.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn slash_30_has_one_host_after_gateway() {
        let s = subnet("10.0.0.0/30");
        let mut used = Leases::default();
        let a = allocate(&s, &used).unwrap();
        assert_eq!(a, "10.0.0.2".parse::<IpAddr>().unwrap());
        used.insert(a);
        assert_eq!(
            allocate(&s, &used),
            Err(IpamError::Exhausted { subnet: s.cidr })
        );
    }

    #[test]
    fn requested_addresses_are_checked() {
        let s = subnet("172.16.0.0/16");
        let used: Leases = ["172.16.1.1".parse().unwrap()].into_iter().collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(matches!(
            check_requested(&s, ip("172.17.0.5"), &used),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert!(matches!(
            check_requested(&s, ip("172.16.0.0"), &used),
            Err(IpamError::NetworkAddress { .. })
        ));
        assert!(matches!(
            check_requested(&s, ip("172.16.255.255"), &used),
            Err(IpamError::BroadcastAddress { .. })
        ));
        assert!(matches!(
            check_requested(&s, ip("172.16.0.1"), &used),
            Err(IpamError::Gateway { .. })
        ));
        assert!(matches!(
            check_requested(&s, ip("172.16.1.1"), &used),
            Err(IpamError::InUse { .. })
        ));
        assert!(check_requested(&s, ip("172.16.1.2"), &used).is_ok());
    }

    #[test]
    fn leases_of_the_other_family_and_other_subnets_are_not_in_the_way() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (v4, v6) = (subnet("10.0.0.0/24"), subnet("fd00:1::/64"));
        // Leases of a dual-stack network, and others around its subnets.
        let used: Leases = [
            "10.0.0.1",
            "10.0.0.2",
            "10.0.0.4",
            "9.255.255.255",
            "10.0.1.3",
            "fd00:1::1",
            "fd00:1::2",
            "fd00:1::3",
            "fd00::5",
            "fd00:2::2",
        ]
        .into_iter()
        .map(ip)
        .collect();
        assert_eq!(allocate(&v4, &used).unwrap(), ip("10.0.0.3"));
        assert_eq!(allocate(&v6, &used).unwrap(), ip("fd00:1::4"));
        // The gateway is skipped whether it is among the leases or not.
        let gateway_only: Leases = [ip("fd00:1::2")].into_iter().collect();
        assert_eq!(allocate(&v6, &gateway_only).unwrap(), ip("fd00:1::3"));
    }

    #[test]
    fn ipv6_allocation() {
        let s = subnet("fd00:1::/64");
        assert_eq!(s.gateway, "fd00:1::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            allocate(&s, &Leases::default()).unwrap(),
            "fd00:1::2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn free_subnet_avoids_taken_ones() {
        let taken: Vec<IpNet> = vec![
            "172.30.0.0/24".parse().unwrap(),
            "172.30.1.0/25".parse().unwrap(),
        ];
        assert_eq!(
            pick_free_subnet(false, &taken).unwrap(),
            "172.30.2.0/24".parse::<IpNet>().unwrap()
        );
        let all: Vec<IpNet> = vec!["172.30.0.0/16".parse().unwrap()];
        assert_eq!(
            pick_free_subnet(false, &all).unwrap(),
            "10.200.0.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            pick_free_subnet(true, &[]).unwrap(),
            "fd6e:736e:6574::/64".parse::<IpNet>().unwrap()
        );
    }

    proptest! {
        /// Allocating until exhaustion never repeats an address, never leaves
        /// the subnet and never hands out the gateway.
        #[test]
        fn allocation_never_repeats(prefix in 24u8..=30, base in any::<u32>(), pre in proptest::collection::vec(any::<u8>(), 0..20)) {
            let cidr = IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base), prefix).unwrap().trunc());
            let s = Subnet { cidr, gateway: default_gateway(&cidr).unwrap() };
            let mut used = Leases::default();
            // Some addresses taken up front, as if requested with --ip.
            for p in pre {
                let a = IpAddr::V4(Ipv4Addr::from(u32::from(cidr.network().to_string().parse::<Ipv4Addr>().unwrap()) + u32::from(p)));
                if check_requested(&s, a, &used).is_ok() {
                    used.insert(a);
                }
            }
            loop {
                match allocate(&s, &used) {
                    Ok(a) => {
                        prop_assert!(cidr.contains(&a));
                        prop_assert_ne!(a, s.gateway);
                        prop_assert!(check_requested(&s, a, &used).is_ok());
                        prop_assert!(used.insert(a), "handed out twice: {}", a);
                    }
                    Err(IpamError::Exhausted { .. }) => break,
                    Err(e) => prop_assert!(false, "unexpected {}", e),
                }
            }
            // Every host address except the gateway is now leased.
            let hosts = cidr.hosts().count();
            prop_assert_eq!(used.len(), hosts - 1);
        }
    }
}

//! Published ports: `[HOSTIP:]HOSTPORT[-END]:PORT[-END][/tcp|/udp|/sctp]`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port or range: `count` consecutive host ports starting at
/// `host_port` lead to as many ports starting at `port` in the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// The host address it is published on; none means every address of
    /// the host; `0.0.0.0` or `::` mean every address of that family.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub port: u16,
    pub count: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid published port {spec:?}: {reason}")]
pub struct PortError {
    pub spec: String,
    pub reason: String,
}

fn err(spec: &str, reason: impl Into<String>) -> PortError {
    PortError {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// `80` or `8000-8010`: first port and count.
fn range(spec: &str, s: &str, what: &str) -> Result<(u16, u16), PortError> {
    let port = |p: &str| -> Result<u16, PortError> {
        let n: u32 = p
            .parse()
            .map_err(|_| err(spec, format!("{what} {p:?} is not a port number")))?;
        if n == 0 || n > 65535 {
            return Err(err(spec, format!("{what} {n} is outside 1-65535")));
        }
        Ok(n as u16)
    };
    match s.split_once('-') {
        None => Ok((port(s)?, 1)),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(err(spec, format!("{what} range {a}-{b} is reversed")));
            }
            Ok((a, b - a + 1))
        }
    }
}

impl FromStr for PortMapping {
    type Err = PortError;

    fn from_str(spec: &str) -> Result<Self, PortError> {
        let (rest, protocol) = match spec.rsplit_once('/') {
            None => (spec, Protocol::Tcp),
            Some((rest, p)) => (
                rest,
                match p.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "sctp" => Protocol::Sctp,
                    _ => {
                        return Err(err(
                            spec,
                            format!("unknown protocol {p:?} (tcp, udp or sctp)"),
                        ))
                    }
                },
            ),
        };
        // An IPv6 host address comes in brackets: [::1]:8080:80.
        let (host_ip, ports) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, ports) = after
                .split_once("]:")
                .ok_or_else(|| err(spec, "expected [IPv6]:HOSTPORT:PORT"))?;
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| err(spec, format!("{ip:?} is not an IPv6 address")))?;
            if ip.is_ipv4() {
                return Err(err(spec, "brackets are for IPv6 addresses"));
            }
            (Some(ip), ports)
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.as_slice() {
                // `80` or `8000-8009`: container ports, on host ports that
                // nsnet picks (as `docker run -p 80`).
                [only] if !only.is_empty() => {
                    let (port, count) = range(spec, only, "port")?;
                    return Ok(PortMapping {
                        host_ip: None,
                        host_port: AUTO,
                        port,
                        count,
                        protocol,
                    });
                }
                [_, _] => (None, rest),
                [ip, h, c] => {
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| err(spec, format!("{ip:?} is not an IP address")))?;
                    (Some(ip), &rest[rest.len() - h.len() - c.len() - 1..])
                }
                _ if parts.len() > 3 => {
                    return Err(err(
                        spec,
                        "IPv6 host addresses go in brackets: [::1]:8080:80",
                    ))
                }
                _ => return Err(err(spec, "expected [HOSTIP:]HOSTPORT:PORT[/PROTOCOL]")),
            }
        };
        let (host, inner) = ports
            .split_once(':')
            .ok_or_else(|| err(spec, "expected [HOSTIP:]HOSTPORT:PORT[/PROTOCOL]"))?;
        let (host_port, host_count) = range(spec, host, "host port")?;
        let (port, count) = range(spec, inner, "port")?;
        if host_count != count {
            return Err(err(
                spec,
                format!("host range has {host_count} ports but the target range has {count}"),
            ));
        }
        Ok(PortMapping {
            host_ip,
            host_port,
            port,
            count,
            protocol,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        let last = |p: u16| p + (self.count - 1);
        if self.host_port == AUTO && self.count == 1 {
            write!(f, "{}", self.port)?;
        } else if self.host_port == AUTO {
            write!(f, "{}-{}", self.port, last(self.port))?;
        } else if self.count == 1 {
            write!(f, "{}:{}", self.host_port, self.port)?;
        } else {
            write!(
                f,
                "{}-{}:{}-{}",
                self.host_port,
                last(self.host_port),
                self.port,
                last(self.port)
            )?;
        }
        write!(f, "/{}", self.protocol)
    }
}

/// The host port of a mapping whose host ports nsnet is to pick.
pub const AUTO: u16 = 0;
/// Where picked host ports come from: Linux's default ephemeral range, as
/// Docker does.
pub const AUTO_RANGE: std::ops::RangeInclusive<u16> = 32768..=60999;

impl PortMapping {
    /// The host ports are nsnet's to pick.
    pub fn is_auto(&self) -> bool {
        self.host_port == AUTO
    }

    /// Whether a recorded mapping is what `wanted` asked for: picked host
    /// ports match whatever was picked.
    pub fn fulfils(&self, wanted: &PortMapping) -> bool {
        if wanted.is_auto() {
            self.host_ip == wanted.host_ip
                && self.port == wanted.port
                && self.count == wanted.count
                && self.protocol == wanted.protocol
        } else {
            self == wanted
        }
    }

    /// Host ports covered.
    pub fn host_ports(&self) -> std::ops::RangeInclusive<u32> {
        let start = u32::from(self.host_port);
        start..=start + u32::from(self.count) - 1
    }

    /// Whether the mapping applies to host addresses of the family of `v4`.
    pub fn covers_family(&self, v4: bool) -> bool {
        self.host_ip.is_none_or(|ip| ip.is_ipv4() == v4)
    }

    /// Two mappings compete for the same host port: same protocol,
    /// overlapping ports, and host addresses that overlap (a wildcard
    /// overlaps every address of its family).
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        if self.protocol != other.protocol {
            return false;
        }
        let (a, b) = (self.host_ports(), other.host_ports());
        if a.end() < b.start() || b.end() < a.start() {
            return false;
        }
        match (self.host_ip, other.host_ip) {
            (None, _) | (_, None) => true,
            (Some(x), Some(y)) if x.is_ipv4() != y.is_ipv4() => false,
            (Some(x), Some(y)) => x == y || x.is_unspecified() || y.is_unspecified(),
        }
    }

    /// Published only on loopback (127.0.0.0/8 or ::1): reachable from the
    /// host itself and never from a neighbour.
    pub fn loopback_only(&self) -> bool {
        self.host_ip.is_some_and(|ip| ip.is_loopback())
    }
}

/// A socket of the host that listens on (or, for UDP, is bound to) a port:
/// a mapping covering it would silently take its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostListener {
    pub protocol: Protocol,
    pub addr: IpAddr,
    pub port: u16,
    /// The socket's inode, which names the process holding it.
    pub inode: u32,
    /// `name[pid]` of a process holding it, where one was looked up and
    /// found.
    pub process: Option<String>,
}

impl HostListener {
    /// Whether publishing `m` would take this listener's traffic. A
    /// listener on `::` counts for IPv4 too (dual-stack sockets are the
    /// default).
    pub fn is_hijacked_by(&self, m: &PortMapping) -> bool {
        let dual = self.addr.is_ipv6() && self.addr.is_unspecified();
        let as_mapping = PortMapping {
            host_ip: if dual { None } else { Some(self.addr) },
            host_port: self.port,
            port: self.port,
            count: 1,
            protocol: self.protocol,
        };
        as_mapping.conflicts_with(m)
    }
}

impl fmt::Display for HostListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = match self.addr {
            IpAddr::V6(a) => format!("[{a}]"),
            IpAddr::V4(a) => a.to_string(),
        };
        write!(f, "{addr}:{}/{}", self.port, self.protocol)?;
        if let Some(p) = &self.process {
            write!(f, " ({p})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_asks_for_a_picked_host_port() {
        let m = p("80");
        assert!(m.is_auto());
        assert_eq!((m.port, m.count, m.protocol), (80, 1, Protocol::Tcp));
        assert_eq!(m.to_string(), "80/tcp");
        assert_eq!(p("80/tcp"), m);
        let r = p("5000-5002/udp");
        assert_eq!(
            (r.port, r.count, r.protocol, r.is_auto()),
            (5000, 3, Protocol::Udp, true)
        );
        assert_eq!(p(&r.to_string()), r);
        let picked = PortMapping {
            host_port: 32768,
            ..m.clone()
        };
        assert!(picked.fulfils(&m) && !picked.fulfils(&p("8080:80")));
    }

    #[test]
    fn listeners_are_hijacked_by_mappings_that_cover_them() {
        let l = |addr: &str, port, protocol| HostListener {
            protocol,
            addr: addr.parse().unwrap(),
            port,
            inode: 0,
            process: None,
        };
        let m: PortMapping = "8080:80".parse().unwrap();
        assert!(l("0.0.0.0", 8080, Protocol::Tcp).is_hijacked_by(&m));
        assert!(l("::", 8080, Protocol::Tcp).is_hijacked_by(&m));
        assert!(l("127.0.0.1", 8080, Protocol::Tcp).is_hijacked_by(&m));
        assert!(!l("0.0.0.0", 8080, Protocol::Udp).is_hijacked_by(&m));
        assert!(!l("0.0.0.0", 8081, Protocol::Tcp).is_hijacked_by(&m));
        let one: PortMapping = "192.0.2.7:8080:80".parse().unwrap();
        assert!(l("0.0.0.0", 8080, Protocol::Tcp).is_hijacked_by(&one));
        assert!(!l("192.0.2.8", 8080, Protocol::Tcp).is_hijacked_by(&one));
        assert!(l("::", 8080, Protocol::Tcp).is_hijacked_by(&one));
        let range: PortMapping = "9000-9009:9000-9009/udp".parse().unwrap();
        assert!(l("0.0.0.0", 9005, Protocol::Udp).is_hijacked_by(&range));
    }

    fn p(s: &str) -> PortMapping {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms_that_parse() {
        let m = p("8080:80");
        assert_eq!(
            (m.host_ip, m.host_port, m.port, m.count, m.protocol),
            (None, 8080, 80, 1, Protocol::Tcp)
        );
        assert_eq!(p("53:5353/udp").protocol, Protocol::Udp);
        assert_eq!(p("9:9/SCTP").protocol, Protocol::Sctp);
        let m = p("127.0.0.1:8080:80");
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert!(m.loopback_only());
        let m = p("[::1]:8080:80/udp");
        assert_eq!(m.host_ip, Some("::1".parse().unwrap()));
        let m = p("8000-8009:9000-9009");
        assert_eq!((m.host_port, m.port, m.count), (8000, 9000, 10));
        assert_eq!(m.to_string(), "8000-8009:9000-9009/tcp");
        assert_eq!(
            p("[2001:db8::1]:1:2/udp").to_string(),
            "[2001:db8::1]:1:2/udp"
        );
        assert_eq!(p("65535:1").host_port, 65535);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, needle) in [
            ("0:80", "outside 1-65535"),
            ("8080:65536", "outside 1-65535"),
            ("8080:0", "outside 1-65535"),
            ("9000-8000:1-1001", "reversed"),
            ("8000-8010:9000-9001", "11 ports"),
            ("8080:80/icmp", "unknown protocol"),
            // A bare port is a container port on a picked host port (as
            // `docker run -p 80`); it must still be a port.
            ("0", "outside 1-65535"),
            ("80-70", "reversed"),
            ("a:80", "not a port number"),
            ("1.2.3:8080:80", "not an IP address"),
            ("::1:8080:80", "brackets"),
            ("[1.2.3.4]:8080:80", "brackets are for IPv6"),
            ("[::1]8080:80", "expected [IPv6]"),
            ("", "expected"),
            ("1:2:3:4", "brackets"),
        ] {
            let e = spec.parse::<PortMapping>().unwrap_err();
            assert!(e.to_string().contains(needle), "{spec}: {e}");
            assert!(e.to_string().contains(&format!("{spec:?}")), "{e}");
        }
    }

    #[test]
    fn conflicts() {
        let c = |a: &str, b: &str| p(a).conflicts_with(&p(b));
        assert!(c("8080:80", "8080:81"));
        assert!(!c("8080:80", "8080:80/udp"));
        assert!(c("8000-8010:1-11", "8010:5"));
        assert!(!c("8000-8010:1-11", "8011:5"));
        assert!(c("127.0.0.1:8080:80", "8080:80"));
        assert!(!c("127.0.0.1:8080:80", "127.0.0.2:8080:80"));
        assert!(c("0.0.0.0:8080:80", "127.0.0.2:8080:80"));
        assert!(!c("[::1]:8080:80", "127.0.0.1:8080:80"));
    }

    proptest::proptest! {
        #[test]
        fn display_round_trips(host in 1u16..60000, port in 1u16..60000, count in 1u16..100, proto in 0..3u8) {
            let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][proto as usize];
            let m = PortMapping { host_ip: None, host_port: host, port, count, protocol };
            let back: PortMapping = m.to_string().parse().unwrap();
            proptest::prop_assert_eq!(back, m);
        }
    }
}

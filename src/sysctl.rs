//! Kernel parameters under `/proc/sys`. They are per network namespace and
//! resolve against the namespace of the thread that opens the file.

use std::fs;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading sysctl {key}: {source}")]
    Read { key: String, source: io::Error },
    #[error("setting sysctl {key} to {value}: {source}")]
    Write {
        key: String,
        value: String,
        source: io::Error,
    },
}

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

/// Duplicate address detection of an interface's IPv6 addresses.
pub fn accept_dad(ifname: &str) -> String {
    format!("net/ipv6/conf/{ifname}/accept_dad")
}

fn path(key: &str) -> String {
    format!("/proc/sys/{key}")
}

pub fn read(key: &str) -> Result<String, Error> {
    fs::read_to_string(path(key))
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Read {
            key: key.to_string(),
            source,
        })
}

/// Writes only when the value differs: `/proc/sys` is read-only in many
/// containers, and an unchanged value must not fail there.
pub fn write(key: &str, value: &str) -> Result<(), Error> {
    if read(key).ok().as_deref() == Some(value) {
        return Ok(());
    }
    fs::write(path(key), value).map_err(|source| Error::Write {
        key: key.to_string(),
        value: value.to_string(),
        source,
    })
}

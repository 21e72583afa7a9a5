//! Kernel parameters under `/proc/sys`. They are per network namespace and
//! resolve against the namespace of the thread that opens the file.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading sysctl {key}")]
    Read { key: String, source: io::Error },
    #[error("setting sysctl {key} to {value}")]
    Write {
        key: String,
        value: String,
        source: io::Error,
    },
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

/// Where an interface's own settings are, under `net/`.
const DEVICE_DIRS: [&str; 4] = ["ipv4/conf", "ipv6/conf", "ipv4/neigh", "ipv6/neigh"];

/// The writable settings of interface `ifname` (IPv4 and IPv6 `conf` and
/// `neigh`) that differ from this namespace's defaults: an interface that
/// enters a namespace starts from that namespace's defaults, so these are
/// what a move loses. Where a namespace shows no defaults (`neigh` outside
/// the first namespace, whose defaults every namespace shares), all of
/// them; a setting with a `_ms` twin only as the twin. Keys without the
/// interface (`ipv6/conf/accept_ra`); what cannot be read (`stable_secret`
/// unset) is left out.
pub fn device_settings(ifname: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in DEVICE_DIRS {
        let Ok(entries) = fs::read_dir(path(&format!("net/{dir}/{ifname}"))) else {
            continue;
        };
        let names: Vec<String> = entries
            .flatten()
            .filter(|e| {
                e.metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o200 != 0)
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in &names {
            if names.contains(&format!("{name}_ms")) {
                continue;
            }
            let Ok(own) = read(&format!("net/{dir}/{ifname}/{name}")) else {
                continue;
            };
            let default = read(&format!("net/{dir}/default/{name}")).ok();
            if default.as_deref() != Some(own.as_str()) {
                out.insert(format!("{dir}/{name}"), own);
            }
        }
    }
    out
}

/// The key of setting `relative` (as `device_settings` names it) of
/// interface `ifname`.
pub fn device_key(ifname: &str, relative: &str) -> String {
    match relative.rsplit_once('/') {
        Some((dir, name)) => format!("net/{dir}/{ifname}/{name}"),
        None => format!("net/{relative}"),
    }
}

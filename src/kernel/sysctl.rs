//! Kernel parameters under `/proc/sys`. They are per network namespace and
//! resolve against the namespace of the thread that opens the file.

use std::fs;
use std::io;

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

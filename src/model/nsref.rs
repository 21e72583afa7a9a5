//! How a user names a network namespace: a name under `/run/netns`, or a
//! path to an nsfs file such as `/proc/PID/ns/net`. Pure: opening one is
//! the kernel layer's business (`kernel::netns::open`).

use std::fmt;
use std::path::{Path, PathBuf};

/// Where iproute2 keeps its namespace mount points.
pub const RUN_DIR: &str = "/run/netns";
/// Longest namespace name accepted (a file name).
const NAME_MAX: usize = 255;

/// A namespace name or path that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid namespace name {name:?}: {reason}")]
pub struct InvalidNsName {
    pub name: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsRef {
    Named(String),
    Path(PathBuf),
}

impl fmt::Display for NsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsRef::Named(n) => f.write_str(n),
            NsRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Recorded as the string the user typed: a path has a `/`, a name has not.
impl serde::Serialize for NsRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NsRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NsRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for NsRef {
    type Err = InvalidNsName;
    fn from_str(s: &str) -> Result<NsRef, InvalidNsName> {
        NsRef::parse(s)
    }
}

impl NsRef {
    /// Anything with a `/` is a path; everything else must be a valid name.
    pub fn parse(s: &str) -> Result<NsRef, InvalidNsName> {
        if s.contains('/') {
            if s.contains('\0') {
                return Err(InvalidNsName {
                    name: s.into(),
                    reason: "contains a NUL byte",
                });
            }
            if !s.starts_with('/') {
                return Err(InvalidNsName {
                    name: s.into(),
                    reason: "a namespace given with a / must be an absolute path (such as /proc/PID/ns/net); names have no /",
                });
            }
            Ok(NsRef::Path(PathBuf::from(s)))
        } else {
            validate_name(s)?;
            Ok(NsRef::Named(s.to_string()))
        }
    }

    /// The name, for namespaces under `/run/netns`.
    pub fn name(&self) -> Option<&str> {
        match self {
            NsRef::Named(n) => Some(n),
            NsRef::Path(_) => None,
        }
    }

    /// The file to open, and whether a symlink there must be refused
    /// (names never follow a symlink out of `/run/netns`).
    pub fn file(&self) -> (PathBuf, bool) {
        match self {
            NsRef::Named(n) => (path_of(n), true),
            NsRef::Path(p) => (p.clone(), false),
        }
    }
}

/// A name iproute2 would accept as a file under `/run/netns`.
pub fn validate_name(name: &str) -> Result<(), InvalidNsName> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." {
        Some("must not be . or ..")
    } else if name.contains('/') {
        Some("must not contain /")
    } else if name.contains('\0') {
        Some("must not contain a NUL byte")
    } else if name.len() > NAME_MAX {
        Some("longer than 255 bytes")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain spaces or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidNsName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The mount point of a named namespace.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", "a\0b", "a b", "tab\tx"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_name(&"x".repeat(256)).is_err());
        for good in ["ns1", "web-1", "a.b", "x_y", "日本"] {
            assert!(validate_name(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn refs_round_trip_through_json() {
        for r in [
            NsRef::Named("ns1".into()),
            NsRef::Path("/proc/1/ns/net".into()),
        ] {
            let j = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<NsRef>(&j).unwrap(), r);
        }
        assert!(serde_json::from_str::<NsRef>("\"..\"").is_err());
    }

    #[test]
    fn refs_with_slash_are_paths() {
        assert_eq!(
            NsRef::parse("/proc/1/ns/net").unwrap(),
            NsRef::Path("/proc/1/ns/net".into())
        );
        assert_eq!(NsRef::parse("ns1").unwrap(), NsRef::Named("ns1".into()));
        assert!(NsRef::parse("..").is_err());
        let e = NsRef::parse("ns/bad").unwrap_err();
        assert!(e.to_string().contains("absolute path"), "{e}");
        assert_eq!(NsRef::Named("x".into()).file(), (path_of("x"), true));
    }
}

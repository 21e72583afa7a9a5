//! A topology file as values: what `nsnet up` makes the host match, once
//! the file is parsed and validated (`topology`), and what a convergence
//! reports. Pure data.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::lab::{Endpoint, Impairment, LinkRequest, Route};
use super::{ConnectRequest, CreateRequest};

/// A validated topology: requests for the model, plus per-namespace DNS.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The file's canonical path: it marks what an `up` of it created.
    pub owner: String,
    pub networks: Vec<CreateRequest>,
    pub attachments: Vec<ConnectRequest>,
    pub dns: BTreeMap<String, Vec<IpAddr>>,
    /// Links, routers, routes and impairments.
    pub lab: LabSpec,
}

/// A namespace's router settings in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Router {
    pub forward: bool,
    pub routes: Vec<Route>,
}

/// The lab objects a file asks for.
#[derive(Debug, Clone, Default)]
pub struct LabSpec {
    pub links: Vec<LinkRequest>,
    pub routers: BTreeMap<String, Router>,
    pub impairments: BTreeMap<Endpoint, Impairment>,
    /// Commands to run in namespaces, by namespace.
    pub processes: BTreeMap<String, NodeCommands>,
}

/// What runs in a node: `exec` once when `up` makes the node, `run` for
/// as long as the node lives (each a `sh -c` command line); and the files
/// its processes see, by the path they see them at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCommands {
    pub exec: Vec<String>,
    pub run: Vec<String>,
    pub files: BTreeMap<std::path::PathBuf, FileSource>,
}

/// A node file's content: a file beside the topology file (its absolute
/// path here), or text given inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    Path(std::path::PathBuf),
    Text(String),
}

/// Where a node file lives on the host, so that only the node's processes
/// see it at its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilePlace {
    /// Under `/etc/netns/NODE/`, iproute2's convention: `ip netns exec` and
    /// `nsnet exec` bind `/etc/netns/NODE/ENTRY` over `/etc/ENTRY`.
    Etc {
        host: std::path::PathBuf,
        /// The entry of `/etc` it shadows, which must exist on the host.
        shadows: std::path::PathBuf,
    },
    /// Under the node's private directory (`ROOT/PATH`), whose copy of the
    /// file's directory is bound over that directory for the node.
    Private {
        host: std::path::PathBuf,
        /// The directory it is bound over, which must exist on the host.
        dir: std::path::PathBuf,
    },
}

/// Where `path` of node `node` lives, with `root` the node's private
/// directory (no I/O).
pub fn place_of(node: &str, path: &std::path::Path, root: &std::path::Path) -> FilePlace {
    use std::path::{Component, Path};
    match path.strip_prefix("/etc") {
        Ok(rest) => {
            let first = rest.components().next().map_or(Path::new(""), |c| {
                let Component::Normal(n) = c else {
                    return Path::new("");
                };
                Path::new(n)
            });
            FilePlace::Etc {
                host: Path::new("/etc/netns").join(node).join(rest),
                shadows: Path::new("/etc").join(first),
            }
        }
        Err(_) => FilePlace::Private {
            host: root.join(path.strip_prefix("/").unwrap_or(path)),
            dir: path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        },
    }
}

/// What a command changed (or, with `--dry-run`, would change).
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub changes: Vec<String>,
    pub applied: bool,
}

#[cfg(test)]
mod node_file_tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn node_files_go_under_etc_netns_or_the_private_root() {
        let root = Path::new("/run/nsnet/nodes/r1.root");
        assert_eq!(
            place_of("r1", Path::new("/etc/frr/frr.conf"), root),
            FilePlace::Etc {
                host: PathBuf::from("/etc/netns/r1/frr/frr.conf"),
                shadows: PathBuf::from("/etc/frr"),
            }
        );
        assert_eq!(
            place_of("r1", Path::new("/etc/motd"), root),
            FilePlace::Etc {
                host: PathBuf::from("/etc/netns/r1/motd"),
                shadows: PathBuf::from("/etc/motd"),
            }
        );
        assert_eq!(
            place_of("r1", Path::new("/var/lib/app/state.json"), root),
            FilePlace::Private {
                host: PathBuf::from("/run/nsnet/nodes/r1.root/var/lib/app/state.json"),
                dir: PathBuf::from("/var/lib/app"),
            }
        );
    }
}

//! A throw-away network world for the demo and the tests: the calling
//! thread enters a fresh network namespace and a private mount namespace
//! with empty tmpfs over `/run` (so `/run/netns` and the state directory
//! `/run/nsnet` start empty) and `/dev/shm`, and overlays over `/etc` and
//! `/var/lib` whose changes stay on that tmpfs (`/etc/netns` starts empty). Processes the thread
//! starts inherit both. Nothing of it reaches the host; it all vanishes
//! when the thread (or process) that entered it ends.

use std::fs;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// nsnet's default state directory, made as on a host where nsnet has run
/// (the store's `DEFAULT_DIR`; a test keeps the two equal).
pub const STATE_DIR: &str = "/run/nsnet";

#[derive(Debug, thiserror::Error)]
#[error("entering a private sandbox: {what}")]
pub struct Error {
    what: String,
    source: std::io::Error,
}

fn fail(what: &str) -> impl FnOnce(nix::Error) -> Error + '_ {
    move |e| Error {
        what: what.to_string(),
        source: e.into(),
    }
}

/// An overlay over `dir` whose upper layer is on the sandbox's /run.
fn overlay(dir: &str) -> Result<(), Error> {
    let layers =
        Path::new("/run/.nsnet-sandbox").join(dir.trim_start_matches('/').replace('/', "-"));
    for d in ["upper", "work"] {
        fs::create_dir_all(layers.join(d)).map_err(|source| Error {
            what: format!("creating {}", layers.join(d).display()),
            source,
        })?;
    }
    let opts = format!(
        "lowerdir={dir},upperdir={},workdir={}",
        layers.join("upper").display(),
        layers.join("work").display()
    );
    mount(
        Some("overlay"),
        dir,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| Error {
        what: format!("overlay on {dir}"),
        source: e.into(),
    })
}

fn netns_id() -> Option<std::path::PathBuf> {
    fs::read_link("/proc/thread-self/ns/net").ok()
}

/// Moves the calling thread into a sandbox. In a process with other threads
/// only the calling thread moves (mount namespaces are per thread once the
/// filesystem context is unshared, which `unshare` does).
pub fn enter() -> Result<(), Error> {
    let outer = netns_id();
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(fail("unshare"))?;
    if netns_id() == outer {
        return Err(Error {
            what: "checking isolation".into(),
            source: std::io::Error::other("still in the original network namespace"),
        });
    }
    // Private propagation first, so that nothing mounted below leaks back.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(fail("making mounts private"))?;
    let tmpfs = |dir: &'static str| {
        mount(
            Some("nsnet-sandbox"),
            dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        )
        .map_err(fail(dir))
    };
    tmpfs("/run")?;
    // Podman keeps its lock file there (libpod_lock): never the host's.
    tmpfs("/dev/shm")?;
    // Writes to /etc (per-namespace resolv.conf under /etc/netns) and to
    // /var/lib (libcni's cache, podman's storage) land in overlays whose
    // upper layers live on that tmpfs: nothing reaches the host's.
    overlay("/etc")?;
    overlay("/var/lib")?;
    fs::create_dir_all("/etc/netns").map_err(|source| Error {
        what: "creating /etc/netns".into(),
        source,
    })?;
    tmpfs("/etc/netns")?;
    // As on a host where iproute2 and nsnet have run before.
    for dir in [crate::model::nsref::RUN_DIR, STATE_DIR] {
        fs::create_dir_all(dir).map_err(|source| Error {
            what: format!("creating {dir}"),
            source,
        })?;
    }
    Ok(())
}

//! Named network namespaces, iproute2-compatible: a namespace is kept alive
//! by a bind mount of its nsfs inode onto `/run/netns/NAME`, so `ip netns`,
//! `ip -n` and `ip netns exec` see the same namespaces nsnet does.
//!
//! Namespace membership is per thread. nsnet never moves a thread it does
//! not own: work inside a namespace runs on a throw-away thread (`in_netns`),
//! and whatever that thread opens (netlink socket, ICMP socket, /proc/sys
//! file) stays bound to the namespace after the thread is gone.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where iproute2 keeps its namespace mount points.
pub const RUN_DIR: &str = "/run/netns";
/// Longest namespace name accepted (a file name).
const NAME_MAX: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid namespace name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("namespace {0} does not exist")]
    NotFound(String),
    #[error("namespace {0} already exists")]
    Exists(String),
    #[error("{path} is not a network namespace")]
    NotANamespace { path: String },
    #[error("creating {RUN_DIR}: {0}")]
    RunDir(#[source] io::Error),
    #[error("creating mount point for namespace {name}: {source}")]
    MountPoint { name: String, source: io::Error },
    #[error("creating a new network namespace: {0}")]
    Unshare(#[source] io::Error),
    #[error("bind-mounting namespace {name}: {source}")]
    BindMount { name: String, source: io::Error },
    #[error("unmounting namespace {name}: {source}")]
    Unmount { name: String, source: io::Error },
    #[error("removing {path}: {source}")]
    Remove { path: String, source: io::Error },
    #[error("opening namespace {name}: {source}")]
    Open { name: String, source: io::Error },
    #[error("entering namespace {name}: {source}")]
    Enter { name: String, source: io::Error },
    #[error("listing {RUN_DIR}: {0}")]
    List(#[source] io::Error),
    #[error("a thread working in namespace {0} panicked")]
    ThreadPanicked(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A namespace as a user names it: a name under `/run/netns`, or a path to
/// an nsfs file such as `/proc/PID/ns/net`.
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
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NsRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NsRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl NsRef {
    /// Anything with a `/` is a path; everything else must be a valid name.
    pub fn parse(s: &str) -> Result<NsRef> {
        if s.contains('/') {
            if s.contains('\0') {
                return Err(Error::InvalidName {
                    name: s.into(),
                    reason: "contains a NUL byte",
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

    /// Opens the namespace. Names never follow a symlink out of
    /// `/run/netns`.
    pub fn open(&self) -> Result<OwnedFd> {
        let (path, nofollow) = match self {
            NsRef::Named(n) => (path_of(n), true),
            NsRef::Path(p) => (p.clone(), false),
        };
        let mut opts = OpenOptions::new();
        opts.read(true).custom_flags(libc::O_CLOEXEC);
        if nofollow {
            opts.custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW);
        }
        let file = opts.open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(self.to_string()),
            _ if e.raw_os_error() == Some(libc::ELOOP) => Error::NotANamespace {
                path: path.display().to_string(),
            },
            _ => Error::Open {
                name: self.to_string(),
                source: e,
            },
        })?;
        if !is_netns(&file) {
            return Err(Error::NotANamespace {
                path: path.display().to_string(),
            });
        }
        Ok(file.into())
    }

    /// Whether the namespace exists (and is one).
    pub fn exists(&self) -> bool {
        self.open().is_ok()
    }
}

/// True when `file` is an nsfs inode of a network namespace. An empty file
/// left behind by an interrupted `ip netns add` is not.
fn is_netns(file: &File) -> bool {
    // NS_GET_NSTYPE (_IO(0xb7, 0x3)) answers CLONE_NEWNET for a network
    // namespace and fails with ENOTTY on anything that is not nsfs.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: the ioctl takes no argument and only reads the fd, which
    // `file` keeps open for the duration of the call.
    let kind = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(file), NS_GET_NSTYPE) };
    kind == libc::CLONE_NEWNET
}

/// Checks a namespace name the way iproute2 does, and more strictly: it is a
/// file name under `/run/netns`, so no `/`, no `.`/`..`, no NUL, not empty.
pub fn validate_name(name: &str) -> Result<()> {
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
        Some(reason) => Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

pub fn path_of(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// Makes `/run/netns` a shared mount point, as iproute2 does, so that
/// namespace mounts made later propagate into mount namespaces created by
/// `ip netns exec` and friends.
fn prepare_run_dir() -> Result<()> {
    fs::create_dir_all(RUN_DIR).map_err(Error::RunDir)?;
    let shared = || {
        mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then make it shared.
        Err(nix::Error::EINVAL) => {
            mount(
                Some(RUN_DIR),
                RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::RunDir(e.into()))?;
            shared().map_err(|e| Error::RunDir(e.into()))
        }
        Err(e) => Err(Error::RunDir(e.into())),
    }
}

/// Creates a named namespace.
pub fn add(name: &str) -> Result<()> {
    add_with(name, || ()).map(|_| ())
}

/// Creates a named namespace and runs `f` inside it on the thread that
/// created it (saving a second thread and `setns` for whatever the caller
/// wants to open there). Returns an fd of the new namespace and `f`'s result.
pub fn add_with<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<(OwnedFd, T)> {
    std::thread::scope(|s| {
        // This thread is ours and ends right after: moving it into a new
        // namespace cannot leak into other work.
        s.spawn(|| add_on_throwaway_thread(name, f))
            .join()
            .unwrap_or_else(|_| Err(Error::ThreadPanicked(name.to_string())))
    })
}

/// Creates several namespaces, `workers` at a time, running `f` inside
/// each. Namespace creation is the costly part of an attachment that the
/// kernel lets run in parallel (it takes the pernet lock for reading only).
/// Results come back in the order of `names`.
pub fn add_many<T: Send>(
    names: &[String],
    workers: usize,
    f: impl Fn() -> T + Sync,
) -> Vec<Result<(OwnedFd, T)>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    type Slot<T> = Option<Result<(OwnedFd, T)>>;
    let results: Mutex<Vec<Slot<T>>> = Mutex::new((0..names.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, names.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                // Each worker is a throw-away thread: it moves from one new
                // namespace to the next and ends with the batch.
                let r = add_on_throwaway_thread(name, &f);
                results.lock().expect("no worker panics while holding it")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("workers are done")
        .into_iter()
        .zip(names)
        .map(|(r, name)| r.unwrap_or_else(|| Err(Error::ThreadPanicked(name.clone()))))
        .collect()
}

/// The work of `add_with`. Moves the calling thread into the new namespace
/// for good: only for threads that end soon after and run nothing else.
fn add_on_throwaway_thread<T>(name: &str, f: impl FnOnce() -> T) -> Result<(OwnedFd, T)> {
    validate_name(name)?;
    prepare_run_dir()?;
    let path = path_of(name);
    // O_EXCL: two concurrent adds of one name cannot both succeed.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        // Only a mount point; iproute2 creates it with mode 0 too.
        .mode(0o000)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::Exists(name.to_string()),
            _ => Error::MountPoint {
                name: name.to_string(),
                source: e,
            },
        })?;
    let bound = (|| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::Unshare(e.into()))?;
        // /proc/thread-self, not /proc/self: the latter names the main
        // thread, which is still in the old namespace.
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::BindMount {
            name: name.to_string(),
            source: e.into(),
        })?;
        let fd = current()?;
        Ok((fd, f()))
    })();
    if bound.is_err() {
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&path);
    }
    bound
}

/// Removes a named namespace. The kernel frees it (and any veth end in it)
/// once nothing else holds it: no process inside, no open fd.
pub fn del(name: &str) -> Result<()> {
    validate_name(name)?;
    let path = path_of(name);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound(name.to_string()))
        }
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::NotANamespace {
                path: path.display().to_string(),
            })
        }
        _ => {}
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a leftover placeholder): just unlink.
        Ok(()) | Err(nix::Error::EINVAL) => {}
        Err(e) => {
            return Err(Error::Unmount {
                name: name.to_string(),
                source: e.into(),
            })
        }
    }
    fs::remove_file(&path).map_err(|source| Error::Remove {
        path: path.display().to_string(),
        source,
    })
}

/// Names under `/run/netns`, sorted.
pub fn list() -> Result<Vec<String>> {
    let entries = match fs::read_dir(RUN_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::List(e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Runs `f` on a fresh thread that has joined the namespace `ns`.
/// Whatever `f` opens belongs to that namespace for good.
pub fn in_netns<T: Send>(
    ns: BorrowedFd<'_>,
    label: &str,
    f: impl FnOnce() -> T + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Enter {
                name: label.to_string(),
                source: e.into(),
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(Error::ThreadPanicked(label.to_string())))
    })
}

/// Moves the *calling* thread into `ns`. Only for a process about to exec
/// (`nsnet exec`) or for a private sandbox set up before any thread exists.
pub fn enter_for_exec(ns: &impl AsFd, label: &str) -> Result<()> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::Enter {
        name: label.to_string(),
        source: e.into(),
    })
}

/// The calling thread's namespace.
pub fn current() -> Result<OwnedFd> {
    NsRef::Path(PathBuf::from("/proc/thread-self/ns/net")).open()
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
    }
}

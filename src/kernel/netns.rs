//! Named network namespaces, iproute2-compatible: a namespace is kept alive
//! by a bind mount of its nsfs inode onto `/run/netns/NAME`, so `ip netns`,
//! `ip -n` and `ip netns exec` see the same namespaces nsnet does.
//!
//! Namespace membership is per thread. Work inside a namespace is a visit
//! (`in_netns`, `add_with`): the calling thread enters, does that work
//! alone, and is back before anything else runs on it, or the process
//! aborts; whatever it opened there (netlink socket, ICMP socket) stays
//! bound to the namespace. Threads that move for good (`add_many`'s
//! workers) are throw-away threads of their own.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

pub use crate::model::nsref::{path_of, validate_name, NsRef, RUN_DIR};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidName(#[from] crate::model::nsref::InvalidNsName),
    #[error("namespace {0} does not exist")]
    NotFound(String),
    #[error("namespace {0} already exists")]
    Exists(String),
    #[error("{path} is not a network namespace")]
    NotANamespace { path: String },
    #[error("creating {RUN_DIR}")]
    RunDir(#[source] io::Error),
    #[error("creating mount point for namespace {name}")]
    MountPoint { name: String, source: io::Error },
    #[error("creating a new network namespace")]
    Unshare(#[source] io::Error),
    #[error("bind-mounting namespace {name}")]
    BindMount { name: String, source: io::Error },
    #[error("unmounting namespace {name}")]
    Unmount { name: String, source: io::Error },
    #[error("removing {path}")]
    Remove { path: String, source: io::Error },
    #[error("opening namespace {name}")]
    Open { name: String, source: io::Error },
    #[error("entering namespace {name}")]
    Enter { name: String, source: io::Error },
    #[error("listing {RUN_DIR}")]
    List(#[source] io::Error),
    #[error("a thread working in namespace {0} panicked")]
    ThreadPanicked(String),
    #[error(
        "processes {pids:?} in namespace {name} did not end (SIGKILL sent); the namespace stays"
    )]
    ProcessesStay { name: String, pids: Vec<i32> },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Opens the namespace. Names never follow a symlink out of
/// `/run/netns`.
pub fn open(ns: &NsRef) -> Result<OwnedFd> {
    let (path, nofollow) = ns.file();
    let mut opts = OpenOptions::new();
    opts.read(true).custom_flags(libc::O_CLOEXEC);
    if nofollow {
        opts.custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW);
    }
    let file = opts.open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound(ns.to_string()),
        _ if e.raw_os_error() == Some(libc::ELOOP) => Error::NotANamespace {
            path: path.display().to_string(),
        },
        _ => Error::Open {
            name: ns.to_string(),
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
pub fn exists(ns: &NsRef) -> bool {
    open(ns).is_ok()
}

/// True when `file` is an nsfs inode of a network namespace. An empty file
/// left behind by an interrupted `ip netns add` is not.
fn is_netns(file: &File) -> bool {
    // NS_GET_NSTYPE (_IO(0xb7, 0x3)) answers CLONE_NEWNET for a network
    // namespace and fails with ENOTTY on anything that is not nsfs.
    const NS_GET_NSTYPE: libc::Ioctl = 0xb703;
    // SAFETY: the ioctl takes no argument and only reads the fd, which
    // `file` keeps open for the duration of the call.
    let kind = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(file), NS_GET_NSTYPE) };
    kind == libc::CLONE_NEWNET
}

/// Makes `/run/netns` a shared mount point, as iproute2 does, so that
/// namespace mounts made later propagate into mount namespaces created by
/// `ip netns exec` and friends.
///
/// Unlike iproute2, only the directory's own mount is made shared once it
/// is a mount point: a recursive change walks every namespace mount below
/// it (twice: peer group ids, then propagation), a cost per namespace
/// created that grows with the namespaces there are. Mounts made below a
/// shared mount are shared from birth, so the walk changes nothing that
/// nsnet made; the recursive change is kept for the first setup, which
/// may find mounts there already.
fn prepare_run_dir() -> Result<()> {
    fs::create_dir_all(RUN_DIR).map_err(Error::RunDir)?;
    let shared = |flags: MsFlags| {
        mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | flags,
            None::<&str>,
        )
    };
    match shared(MsFlags::empty()) {
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
            shared(MsFlags::MS_REC).map_err(|e| Error::RunDir(e.into()))
        }
        Err(e) => Err(Error::RunDir(e.into())),
    }
}

/// Creates a named namespace.
pub fn add(name: &str) -> Result<()> {
    add_with(name, || ()).map(|_| ())
}

/// Creates a named namespace and runs `f` inside it (saving a `setns`
/// for whatever the caller wants to open there). Returns an fd of the new
/// namespace and `f`'s result. The calling thread visits the namespace
/// and comes back (see `Visit`): a thread of its own to do this costs more
/// than the rest of it together (50-100 µs against under 10 in this VM).
pub fn add_with<T>(name: &str, f: impl FnOnce() -> T) -> Result<(OwnedFd, T)> {
    let _visit = Visit::start()?;
    add_on_throwaway_thread(name, f)
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
/// for good: only for threads that end soon after and run nothing else,
/// or that a `Visit` brings back.
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

/// A namespace's identity: the device and inode of its nsfs file.
pub type NsKey = (u64, u64);

fn key_of(path: &std::path::Path) -> Option<NsKey> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Every live process, by the network namespace it is in (one pass over
/// `/proc`; a zombie has left its namespaces and is not counted).
pub fn processes_by_namespace() -> std::collections::HashMap<NsKey, Vec<i32>> {
    let mut map: std::collections::HashMap<NsKey, Vec<i32>> = std::collections::HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return map;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(key) = key_of(&e.path().join("ns/net")) {
            map.entry(key).or_default().push(pid);
        }
    }
    map
}

/// The identity of the named namespace, if it exists.
pub fn key(name: &str) -> Option<NsKey> {
    key_of(&path_of(name))
}

/// The live processes in the namespace `key`.
fn pids_in(key: NsKey) -> Vec<i32> {
    processes_by_namespace().remove(&key).unwrap_or_default()
}

/// Ends the processes in namespace `name` (`pids`, found by
/// `processes_by_namespace`, and those that appear meanwhile): SIGTERM,
/// SIGKILL to those still there after `grace`, so that no process keeps
/// the namespace alive once it is deleted.
pub fn end_processes(name: &str, pids: &[i32], grace: std::time::Duration) -> Result<()> {
    let Some(key) = key(name) else {
        return Ok(());
    };
    let left = super::end_processes(pids.to_vec(), grace, || pids_in(key));
    if left.is_empty() {
        Ok(())
    } else {
        Err(Error::ProcessesStay {
            name: name.to_string(),
            pids: left,
        })
    }
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

/// Runs `f` in the namespace `ns`: whatever `f` opens there (sockets)
/// belongs to that namespace for good. The calling thread visits the
/// namespace and comes back (see `Visit`).
pub fn in_netns<T>(ns: BorrowedFd<'_>, label: &str, f: impl FnOnce() -> T) -> Result<T> {
    let _visit = Visit::start()?;
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Enter {
        name: label.to_string(),
        source: e.into(),
    })?;
    Ok(f())
}

/// The calling thread's network namespace when the visit started, to
/// which the thread returns when the visit ends, however it ends (an
/// error, a panic). A thread that cannot return aborts the process: no
/// work may go on in a namespace it was not meant for. (Returning needs
/// only the open fd of a namespace the thread was in, and the privilege
/// it had to leave it.)
struct Visit {
    home: OwnedFd,
}

impl Visit {
    fn start() -> Result<Visit> {
        Ok(Visit { home: current()? })
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        if let Err(e) = setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!(
                "nsnet: cannot return to the network namespace it started in ({e}); aborting"
            );
            std::process::abort();
        }
    }
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
    open(&NsRef::Path(PathBuf::from("/proc/thread-self/ns/net")))
}

/// A namespace's identity: its nsfs device and inode, the same whatever
/// path leads to it (`/proc/1/ns/net`, a bind mount under /run/netns).
pub type NsId = (u64, u64);

fn id_of(fd: OwnedFd, label: &str) -> Result<NsId> {
    use std::os::unix::fs::MetadataExt;
    let m = File::from(fd).metadata().map_err(|source| Error::Open {
        name: label.to_string(),
        source,
    })?;
    Ok((m.dev(), m.ino()))
}

/// The identity of `ns`, `None` when it does not exist.
pub fn id(ns: &NsRef) -> Result<Option<NsId>> {
    match open(ns) {
        Ok(fd) => Ok(Some(id_of(fd, &ns.to_string())?)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The identity of the namespace the calling thread is in: the host's, as
/// far as nsnet is concerned (its bridges live there).
pub fn current_id() -> Result<NsId> {
    id_of(current()?, "of this thread")
}

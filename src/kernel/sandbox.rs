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

/// Ends the process at once with the shell's status for the signal; a
/// PID namespace's first process ignores the signals it has no handler
/// for, so Ctrl-C, SIGTERM and a closed pipe need one.
extern "C" fn end_on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

/// The child of `enter_alone`, for the parent's signal handler.
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    let child = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if child > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    }
}

/// `enter`, in a PID namespace of its own as well. The process forks: the
/// parent waits for the child and exits with its status (it never
/// returns); the child, the first process of the new PID namespace,
/// enters the sandbox and returns. Whatever the child starts (a DNS
/// server, detached) dies with it, however it ends (a closed pipe,
/// Ctrl-C, a panic, the parent killed): the kernel kills every process of
/// a PID namespace when its first one exits. The caller must have no other
/// thread (fork copies only the calling one).
pub fn enter_alone() -> Result<(), Error> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    unshare(CloneFlags::CLONE_NEWPID).map_err(fail("unshare of the PID namespace"))?;
    // SAFETY: the caller has no other thread, so the child's memory is
    // consistent; it goes on with ordinary Rust code.
    match unsafe { fork() }.map_err(fail("fork"))? {
        ForkResult::Parent { child } => {
            // A signal for the parent is the child's to act on: the parent
            // passes it on and waits (Ctrl-C reaches both anyway).
            CHILD.store(child.as_raw(), std::sync::atomic::Ordering::Relaxed);
            for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                // SAFETY: the handler only calls kill(2), which is
                // async-signal-safe, with a value read atomically.
                let _ = unsafe { signal(sig, SigHandler::Handler(pass_on)) };
            }
            let code = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break code,
                    Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
                    Ok(_) | Err(nix::Error::EINTR) => continue,
                    Err(_) => break 1,
                }
            };
            std::process::exit(code)
        }
        ForkResult::Child => {
            // SAFETY: prctl(2) touches no memory of ours; the handler only
            // calls _exit.
            unsafe {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(Error {
                        what: "prctl".into(),
                        source: std::io::Error::last_os_error(),
                    });
                }
                for sig in [
                    Signal::SIGINT,
                    Signal::SIGTERM,
                    Signal::SIGHUP,
                    Signal::SIGPIPE,
                ] {
                    signal(sig, SigHandler::Handler(end_on_signal)).map_err(fail("signal"))?;
                }
            }
            enter()
        }
    }
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

//! `nsnet exec`: run a command inside a namespace, as `ip netns exec` does.

use std::ffi::CString;
use std::fs;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use nsnet::model::NsRef;
use nsnet::{Error, Result};

/// Replaces this process with `command` inside `ns`; returns only on error.
///
/// Like iproute2 it also gives the command a private mount namespace with
/// `/sys` remounted (so `/sys/class/net` shows the namespace's interfaces)
/// and the files of `/etc/netns/NAME/` bind-mounted over `/etc/`; the
/// node's private directories (files of a topology file) over theirs.
pub fn exec(ns: &NsRef, command: &[String], state_dir: &Path) -> Result<i32> {
    // The process is single-threaded here and is about to exec: moving its
    // only thread cannot disturb other work.
    nsnet::api::live::enter_for_exec(ns)?;
    if let Some(name) = ns.name() {
        private_mounts(name, state_dir)?;
    }
    let args: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::NulInArguments)?;
    let err = nix::unistd::execvp(&args[0], &args).unwrap_err();
    eprintln!("nsnet: cannot run {}: {err}", command[0]);
    // The shells' convention: 127 not found, 126 found but not runnable.
    Ok(if err == nix::Error::ENOENT { 127 } else { 126 })
}

fn private_mounts(name: &str, state_dir: &Path) -> Result<()> {
    let fail = |what: &str, source: nix::Error| Error::Exec {
        namespace: name.to_string(),
        what: what.to_string(),
        source,
    };
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| fail("new mount namespace", e))?;
    // Keep our mounts from propagating back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| fail("making / a slave mount", e))?;
    if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
        mount(
            Some(name),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| fail("mounting /sys", e))?;
    }
    let etc = Path::new("/etc/netns").join(name);
    if let Ok(entries) = fs::read_dir(&etc) {
        for e in entries.flatten() {
            let target = Path::new("/etc").join(e.file_name());
            if target.exists() {
                mount(
                    Some(&e.path()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|err| fail(&format!("binding {}", e.path().display()), err))?;
            }
        }
    }
    // The node's private directories (files of a topology file outside
    // /etc), over the host's.
    for (source, target) in nsnet::api::nodes::private_binds(state_dir, name) {
        if source.is_dir() && target.is_dir() {
            mount(
                Some(&source),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|err| fail(&format!("binding {}", source.display()), err))?;
        }
    }
    Ok(())
}

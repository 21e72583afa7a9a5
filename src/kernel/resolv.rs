//! Per-namespace DNS the iproute2 way: `ip netns exec NAME` bind-mounts
//! `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

pub const DIR: &str = "/etc/netns";

pub fn path(namespace: &str) -> PathBuf {
    PathBuf::from(DIR).join(namespace).join("resolv.conf")
}

/// Writes the file atomically; never follows a symlink.
pub fn write(namespace: &str, servers: &[IpAddr], search: &[String]) -> io::Result<()> {
    crate::model::nsref::validate_name(namespace).map_err(io::Error::other)?;
    let dir = PathBuf::from(DIR).join(namespace);
    fs::create_dir_all(&dir)?;
    if fs::symlink_metadata(&dir)?.file_type().is_symlink() {
        return Err(io::Error::other(format!("{} is a symlink", dir.display())));
    }
    let tmp = dir.join(".resolv.conf.nsnet");
    let mut text = String::from(
        "# written by nsnet; removed with the namespace's last network or by nsnet down\n",
    );
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path(namespace))
}

/// Removes the file, and its directory when that is left empty.
pub fn remove(namespace: &str) -> io::Result<()> {
    match fs::remove_file(path(namespace)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Only succeeds when empty: other files there are not ours.
    let _ = fs::remove_dir(PathBuf::from(DIR).join(namespace));
    Ok(())
}

//! Changes to the files of one directory, as the kernel reports them
//! (inotify): a reader that must see a writer's change as soon as the
//! writer's call returns asks here instead of polling the files' times.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What counts as a change: a file written (or truncated), created,
/// removed, renamed into or out of the directory, or its metadata changed.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_ATTRIB;

/// A watch on one directory's files.
pub struct DirWatch {
    fd: OwnedFd,
}

impl DirWatch {
    pub fn new(dir: &Path) -> io::Result<DirWatch> {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is
        // a new descriptor that nothing else owns.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by inotify_init1 and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut path = dir.as_os_str().as_bytes().to_vec();
        path.push(0);
        // SAFETY: `path` is NUL-terminated and lives across the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr().cast(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirWatch { fd })
    }

    /// Whether anything changed since the last call. Takes every pending
    /// event; an error other than "nothing pending" (the event queue
    /// overflowed and was dropped, say) counts as a change, so that a
    /// caller never misses one.
    pub fn changed(&self) -> bool {
        // Room for one event with the longest name (16 + 256 bytes): the
        // buffer is filled afresh on every query, so no bigger.
        let mut buf = [0u8; 512];
        let mut changed = false;
        loop {
            // SAFETY: `buf` is writable for its whole length during the call.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                changed = true;
                continue;
            }
            let nothing_pending =
                n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
            return changed || !nothing_pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_kind_of_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let watch = DirWatch::new(dir.path()).unwrap();
        assert!(!watch.changed(), "nothing happened yet");
        let file = dir.path().join("state.json");
        std::fs::write(&file, "1").unwrap();
        assert!(watch.changed(), "a file created and written");
        assert!(!watch.changed(), "the same change, reported twice");
        let tmp = dir.path().join(".state.json.tmp");
        std::fs::write(&tmp, "2").unwrap();
        let _ = watch.changed();
        std::fs::rename(&tmp, &file).unwrap();
        assert!(watch.changed(), "a file renamed over another");
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .write_all(b"3")
            .unwrap();
        assert!(watch.changed(), "a file appended to");
        std::fs::remove_file(&file).unwrap();
        assert!(watch.changed(), "a file removed");
        assert!(!watch.changed());
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DirWatch::new(&dir.path().join("nosuch")).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

//! The state store: one JSON file under a directory (default `/run/nsnet`,
//! a tmpfs that resets at reboot just as namespaces do), guarded by an
//! exclusive lock and replaced atomically, and the journal file of the
//! command in progress. Imports `model` only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::model::{Journal, State, STATE_VERSION};

pub const DEFAULT_DIR: &str = "/run/nsnet";
pub const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
const JOURNAL_FILE: &str = "journal.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state directory {path} is a symlink; refusing to follow it")]
    Symlink { path: String },
    #[error("creating state directory {path}")]
    CreateDir { path: String, source: io::Error },
    #[error("locking {path}")]
    Lock { path: String, source: io::Error },
    #[error("reading {path}")]
    Read { path: String, source: io::Error },
    #[error("state file {path} is corrupted ({reason}); it was left untouched: move it aside to start afresh, or repair it")]
    Corrupt { path: String, reason: String },
    #[error("state file {path} has version {found}, this nsnet understands {STATE_VERSION}")]
    Version { path: String, found: u32 },
    #[error("writing {path}")]
    Write { path: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct Store {
    dir: PathBuf,
}

/// Held while a command reads, changes and writes the state. Dropping it
/// removes the lock file when no state is left (so that a full teardown, or
/// a command that failed before recording anything, leaves the directory
/// exactly as before) and then releases the lock.
pub struct Lock {
    _file: File,
    path: PathBuf,
    state_path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Unlinking while still holding the lock is safe: a waiter that
        // then gets the old inode notices it is no longer at the path and
        // takes the lock again (see `Store::lock`).
        if !self.state_path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn ensure_dir(&self) -> Result<()> {
        let shown = self.dir.display().to_string();
        match fs::symlink_metadata(&self.dir) {
            Ok(m) if m.file_type().is_symlink() => return Err(Error::Symlink { path: shown }),
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::CreateDir {
                    path: shown,
                    source,
                })
            }
        }
        fs::create_dir_all(&self.dir).map_err(|source| Error::CreateDir {
            path: shown,
            source,
        })
    }

    /// Takes the exclusive lock (blocking until other nsnet processes are
    /// done). A separate lock file, so that replacing the state file by
    /// rename never swaps the inode someone is locking.
    pub fn lock(&self) -> Result<Lock> {
        use std::os::unix::fs::MetadataExt;
        self.ensure_dir()?;
        let path = self.path(LOCK_FILE);
        let err = |source| Error::Lock {
            path: path.display().to_string(),
            source,
        };
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o600)
                .open(&path)
                .map_err(err)?;
            file.lock().map_err(err)?;
            // The previous holder may have unlinked the file while we
            // waited: then we hold a lock nobody else can see. Retry on the
            // file that is at the path now.
            let held = file.metadata().map_err(err)?;
            match fs::symlink_metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Lock {
                        _file: file,
                        path,
                        state_path: self.path(STATE_FILE),
                    })
                }
                _ => continue,
            }
        }
    }

    /// Reads the state; a missing file is an empty state.
    pub fn load(&self, _lock: &Lock) -> Result<State> {
        self.read()
    }

    /// Reads without locking, for listings that tolerate a concurrent change.
    pub fn read(&self) -> Result<State> {
        let path = self.path(STATE_FILE);
        let shown = path.display().to_string();
        if let Ok(m) = fs::symlink_metadata(&self.dir) {
            if m.file_type().is_symlink() {
                return Err(Error::Symlink {
                    path: self.dir.display().to_string(),
                });
            }
        }
        let bytes = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(mut f) => {
                let mut buf = Vec::new();
                io::Read::read_to_end(&mut f, &mut buf).map_err(|source| Error::Read {
                    path: shown.clone(),
                    source,
                })?;
                buf
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(State {
                    version: STATE_VERSION,
                    ..State::default()
                })
            }
            Err(source) => {
                return Err(Error::Read {
                    path: shown,
                    source,
                })
            }
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(Error::Version {
                path: shown,
                found: state.version,
            });
        }
        Ok(state)
    }

    /// Writes the state atomically: temp file, fsync, rename. An empty state
    /// removes the file, so that a create-then-remove leaves the directory as
    /// it was.
    pub fn save(&self, _lock: &Lock, state: &State) -> Result<()> {
        if state.is_empty() {
            return self.remove(STATE_FILE);
        }
        self.write_json(STATE_FILE, state)
    }

    /// Records what a command is about to do: the state before and the
    /// state it aims at. Written before the kernel is touched and removed
    /// once the new state is recorded; if it is still there, the command
    /// was interrupted and `journal::recover` finishes the job.
    pub fn write_journal(&self, _lock: &Lock, journal: &Journal) -> Result<()> {
        self.write_json(JOURNAL_FILE, journal)
    }

    pub fn read_journal(&self, _lock: &Lock) -> Result<Option<Journal>> {
        let path = self.path(JOURNAL_FILE);
        let shown = path.display().to_string();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    path: shown,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read {
                path: shown,
                source,
            }),
        }
    }

    pub fn remove_journal(&self, _lock: &Lock) -> Result<()> {
        self.remove(JOURNAL_FILE)
    }

    fn remove(&self, file: &str) -> Result<()> {
        let path = self.path(file);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Write {
                path: path.display().to_string(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Writes a file of the state directory atomically: temp file, fsync,
    /// rename.
    fn write_json(&self, file: &str, value: &impl serde::Serialize) -> Result<()> {
        let path = self.path(file);
        let tmp = self.path(&format!(".{file}.{}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o600)
                .open(&tmp)?;
            let mut bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
            bytes.push(b'\n');
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            Error::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_prepares_the_default_directory() {
        assert_eq!(DEFAULT_DIR, crate::kernel::sandbox::STATE_DIR);
    }

    #[test]
    fn round_trip_and_empty_state_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("nsnet"));
        let lock = store.lock().unwrap();
        let mut state = store.load(&lock).unwrap();
        assert!(state.networks.is_empty());
        state.networks.insert(
            "n".into(),
            crate::model::test_network("n", "n", &["10.0.0.0/24"]),
        );
        store.save(&lock, &state).unwrap();
        assert_eq!(store.load(&lock).unwrap(), state);
        state.networks.clear();
        store.save(&lock, &state).unwrap();
        drop(lock);
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_state_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let err = store.read().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(dir.path().join(STATE_FILE)).unwrap(), b"{not json");
    }

    #[test]
    fn symlinked_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let store = Store::new(&link);
        assert!(matches!(store.lock(), Err(Error::Symlink { .. })));
    }
}

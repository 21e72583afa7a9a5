//! The state store, under a directory (default `/run/nsnet`, a tmpfs that
//! resets at reboot just as namespaces do), guarded by an exclusive lock:
//! the record, one file replaced atomically (JSON lines whose attachment
//! lines are decoded when used: see `record`), a log of the changes
//! made since (one JSON line each, appended: what a command costs to
//! record is the size of its change, not of the record), and the journal
//! of the command in progress. The log is folded into the record once it
//! holds sixteen changes. Imports `model` only.
//!
//! Each change carries a sequence number and the record the number of
//! changes it holds, so that a log left behind by a fold that was cut
//! short is never applied twice.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub(crate) mod lines;
mod record;

use crate::model::delta::StateDelta;
use crate::model::{Journal, State, STATE_VERSION};

pub const DEFAULT_DIR: &str = "/run/nsnet";
pub const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
const JOURNAL_FILE: &str = "journal.json";
pub const LOG_FILE: &str = "state.log";
/// Changes the log holds before they are folded into the record.
const LOG_MAX_CHANGES: u64 = 16;
/// A record smaller than this (about a hundred attachments) is rewritten
/// whole: it costs no more than a line, and the directory then holds the
/// record alone.
const LOG_FROM_BYTES: u64 = 16 << 10;

/// One line of the log.
#[derive(serde::Deserialize)]
struct LogEntry {
    seq: u64,
    change: StateDelta,
}

#[derive(serde::Serialize)]
struct LogEntryRef<'a> {
    seq: u64,
    change: &'a StateDelta,
}

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
    #[error("state file {path} has version {found}, this nsnet understands versions 1 to {STATE_VERSION}")]
    Version { path: String, found: u32 },
    #[error("writing {path}")]
    Write { path: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct Store {
    dir: PathBuf,
    /// The sequence number of the last change read (see `read`).
    last_seq: std::cell::Cell<u64>,
    /// Changes in the log when it was read.
    logged: std::cell::Cell<u64>,
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

/// Decodes a record. The text is checked to be UTF-8 once, in one pass,
/// rather than string by string as `serde_json::from_slice` does: a
/// quarter of the decoding time of a large record.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], shown: &str) -> Result<T> {
    let corrupt = |reason: String| Error::Corrupt {
        path: shown.to_string(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            last_seq: Default::default(),
            logged: Default::default(),
        }
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
                self.last_seq.set(0);
                self.logged.set(0);
                return Ok(State {
                    version: STATE_VERSION,
                    ..State::default()
                });
            }
            Err(source) => {
                return Err(Error::Read {
                    path: shown,
                    source,
                })
            }
        };
        let mut state = record::decode(bytes).map_err(|refusal| match refusal {
            record::Refusal::Corrupt(reason) => Error::Corrupt {
                path: shown.clone(),
                reason,
            },
            record::Refusal::Version(found) => Error::Version {
                path: shown.clone(),
                found,
            },
        })?;
        // Written back in today's form, which an older nsnet must not
        // mistake for its own.
        state.version = STATE_VERSION;
        self.apply_log(&mut state)?;
        Ok(state)
    }

    /// Applies the changes of the log that the record does not hold yet.
    /// A last line without its newline is a change whose command died
    /// while recording it: its journal finishes the job.
    fn apply_log(&self, state: &mut State) -> Result<()> {
        let path = self.path(LOG_FILE);
        let shown = path.display().to_string();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(Error::Read {
                    path: shown,
                    source,
                })
            }
        };
        let mut logged = 0;
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(end) => &bytes[..=end],
            None => &[][..],
        };
        let mut unapplied = Vec::new();
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let entry: LogEntry = parse(line, &shown)?;
            logged += 1;
            if entry.seq > state.changes {
                unapplied.push(entry.change);
                state.changes = entry.seq;
            }
        }
        crate::model::delta::apply_all_in_place(state, &unapplied);
        self.last_seq.set(state.changes);
        self.logged.set(logged);
        Ok(())
    }

    /// Writes the state atomically: temp file, fsync, rename. An empty state
    /// removes the file, so that a create-then-remove leaves the directory as
    /// it was.
    pub fn save(&self, _lock: &Lock, state: &State) -> Result<()> {
        if state.is_empty() {
            self.remove(STATE_FILE)?;
            return self.remove(LOG_FILE);
        }
        // The record holds every change read so far: a log left behind
        // (should its removal below not happen) is then skipped.
        let folded = state.changes.max(self.last_seq.get());
        let encoded = record::encode(state, folded);
        let encoded = encoded.map_err(|e| Error::Write {
            path: self.path(STATE_FILE).display().to_string(),
            source: io::Error::other(e),
        })?;
        self.write_file(STATE_FILE, &encoded)?;
        self.logged.set(0);
        self.remove(LOG_FILE)
    }

    /// Records `after`, which is the state read plus `change`: one line
    /// appended to the log, or, once the log is long (or there is no
    /// record to append to), the whole record.
    pub fn record(&self, lock: &Lock, change: &StateDelta, after: &State) -> Result<()> {
        let record_len = fs::metadata(self.path(STATE_FILE)).map_or(0, |m| m.len());
        if after.is_empty() || record_len < LOG_FROM_BYTES || self.logged.get() >= LOG_MAX_CHANGES {
            return self.save(lock, after);
        }
        let seq = self.last_seq.get() + 1;
        let path = self.path(LOG_FILE);
        let append = || -> io::Result<()> {
            let mut line =
                serde_json::to_vec(&LogEntryRef { seq, change }).map_err(io::Error::other)?;
            line.push(b'\n');
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o600)
                .open(&path)?;
            f.write_all(&line)?;
            f.sync_data()
        };
        append().map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })?;
        self.last_seq.set(seq);
        self.logged.set(self.logged.get() + 1);
        Ok(())
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
            Ok(bytes) => parse(&bytes, &shown).map(Some),
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

    /// Writes a value as a JSON file of the state directory (see
    /// `write_file`).
    fn write_json(&self, file: &str, value: &impl serde::Serialize) -> Result<()> {
        let mut bytes = serde_json::to_vec(value).map_err(|e| Error::Write {
            path: self.path(file).display().to_string(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        self.write_file(file, &[bytes])
    }

    /// Writes a file of the state directory atomically: temp file, fsync,
    /// rename.
    fn write_file(&self, file: &str, pieces: &[impl AsRef<[u8]>]) -> Result<()> {
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
            for piece in pieces {
                f.write_all(piece.as_ref())?;
            }
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
    fn changes_are_appended_folded_and_never_applied_twice() {
        use crate::model::delta::diff;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let lock = store.lock().unwrap();
        let mut state = store.load(&lock).unwrap();
        let mut net = crate::model::test_network("n", "n", &["10.0.0.0/24"]);
        // Big enough to be appended to rather than rewritten.
        for i in 0..200 {
            net.attachments
                .push(crate::model::test_attachment(&format!("x{i}")).into());
        }
        state.networks.insert("n".into(), net.clone());
        store.save(&lock, &state).unwrap();
        // Three connects, three lines.
        for ns in ["a", "b", "c"] {
            let before = store.load(&lock).unwrap();
            let mut after = before.clone();
            net.attachments
                .push(crate::model::test_attachment(ns).into());
            after.networks.insert("n".into(), net.clone());
            store.record(&lock, &diff(&before, &after), &after).unwrap();
        }
        let log = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(log.lines().count(), 3);
        let read = store.read().unwrap();
        assert_eq!(read.networks["n"].attachments.len(), 203);
        // A fold cut short after the record was replaced: the old log is
        // still there, and is skipped, not applied again.
        let stale = log.clone();
        store.save(&lock, &read).unwrap();
        fs::write(dir.path().join(LOG_FILE), &stale).unwrap();
        assert_eq!(store.read().unwrap().networks["n"].attachments.len(), 203);
        // A line cut short by a crash is no change; garbage before the
        // end is a corrupt log.
        fs::write(
            dir.path().join(LOG_FILE),
            format!("{stale}{{\"seq\": 9, \"cha"),
        )
        .unwrap();
        assert_eq!(store.read().unwrap().networks["n"].attachments.len(), 203);
        fs::write(dir.path().join(LOG_FILE), format!("garbage\n{stale}")).unwrap();
        assert!(matches!(store.read(), Err(Error::Corrupt { .. })));
        // An empty state leaves nothing.
        fs::remove_file(dir.path().join(LOG_FILE)).unwrap();
        store.save(&lock, &State::default()).unwrap();
        drop(lock);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_record_of_version_1_is_read_and_written_back_as_today() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let v1 = r#"{"version":1,"networks":{},"resolv_confs":{
            "a":{"servers":["10.0.0.1"],"owner":"nsnet network DNS","search":["nsnet.internal"]},
            "b":{"servers":["10.0.0.1"],"owner":"nsnet network DNS","search":["nsnet.internal"]}}}"#;
        fs::write(dir.path().join(STATE_FILE), v1).unwrap();
        let lock = store.lock().unwrap();
        let state = store.load(&lock).unwrap();
        assert_eq!(state.version, STATE_VERSION);
        assert_eq!(state.resolv_confs.len(), 2);
        store.save(&lock, &state).unwrap();
        let text = fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(
            text.starts_with(&format!("{{\"version\":{STATE_VERSION},")),
            "{text}"
        );
        assert_eq!(text.matches("nsnet network DNS").count(), 1, "{text}");
        assert_eq!(store.read().unwrap(), state);
        // A record from a later nsnet is refused, and kept.
        fs::write(
            dir.path().join(STATE_FILE),
            r#"{"version":99,"networks":{}}"#,
        )
        .unwrap();
        let err = store.read().unwrap_err();
        assert!(matches!(err, Error::Version { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("versions 1 to"), "{err}");
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

//! Files in the storage directory: the startup datastore and a pending
//! persisted confirmed commit. Every write is atomic (temp file, fsync,
//! rename, fsync of the directory), so a crash leaves the old or the new
//! file, never a torn one.
//!
//! The directory itself is [`StorageLock`]ed for the daemon's life: two
//! daemons on one storage dir would share a lease log and a startup file,
//! and fight over the same interfaces. Its files hold personal data (MAC
//! addresses, host names) and secrets: each is 0600, and a directory the
//! daemon creates is 0700 (the package makes it 0750).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Paths of the files the northbound persists.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// Tests: startup writes wait until the gate opens (a slow disk).
    #[cfg(test)]
    pub gate: Option<Arc<Gate>>,
    /// Tests: the same for the persisted confirmed commit's record.
    #[cfg(test)]
    pub confirm_gate: Option<Arc<Gate>>,
}

/// Tests: holds writes (a disk whose fsync takes its time).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    /// Writes that reached the gate.
    pub entered: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn pass(&self) {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let g = self.open.lock().unwrap();
        drop(self.opened.wait_while(g, |open| !*open).unwrap());
    }
}

/// A change of a file of the storage directory, for [`StorageWriter`].
#[derive(Debug)]
pub enum StorageWrite {
    SaveStartup(String),
    DeleteStartup,
    /// The record of a confirmed commit given `<persist>`.
    SaveConfirm(PersistedConfirm),
}

/// Writes the startup file and the persisted confirmed commit's record on
/// a thread of its own, in the order given, and reports each outcome in
/// that order on `done`: an atomic write ends with two fsyncs, which on a
/// busy or slow disk take from milliseconds to seconds, and the northbound
/// actor must not wait for them (every other session's operation would).
/// One thread for both: what is given later never reaches the disk before
/// what was given earlier. Dropping the writer lets the thread finish what
/// it was given, then end.
#[derive(Debug)]
pub struct StorageWriter {
    tx: Option<std::sync::mpsc::Sender<StorageWrite>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StorageWriter {
    pub fn start(
        store: Store,
        done: tokio::sync::mpsc::UnboundedSender<std::io::Result<()>>,
    ) -> std::io::Result<StorageWriter> {
        let (tx, rx) = std::sync::mpsc::channel::<StorageWrite>();
        let thread = std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || {
                for w in rx {
                    let r = match w {
                        StorageWrite::SaveStartup(xml) => store.write_startup(&xml),
                        StorageWrite::DeleteStartup => store.delete_startup(),
                        StorageWrite::SaveConfirm(rec) => store.write_confirm(&rec),
                    };
                    // the actor may be gone: the writes given are still made
                    let _ = done.send(r);
                }
            })?;
        Ok(StorageWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue `w` behind the writes given before.
    pub fn submit(&self, w: StorageWrite) -> std::io::Result<()> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(w).ok())
            .ok_or_else(|| std::io::Error::other("the storage writer has stopped"))
    }

    /// Let the thread finish the writes given, and wait for it.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A confirmed commit given `<persist>`: it must survive a daemon restart
/// (RFC 6241 §8.4.5.1), so both the configuration to roll back to and the
/// configuration under test are kept with the deadline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersistedConfirm {
    pub persist_id: String,
    /// Deadline as milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
    pub rollback_xml: String,
    pub pending_xml: String,
}

/// Why the storage directory cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("storage dir {dir} is in use by hotleased pid {pid} (lock {lock}): stop that daemon first, or give this one another [storage] dir")]
    Held {
        dir: String,
        pid: String,
        lock: String,
    },
    #[error("storage dir {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

/// The storage directory, locked (`flock`) by this process until dropped;
/// the lock file holds the holder's pid, for the error of a second daemon.
/// The kernel drops the lock when the process ends, however it ends: a
/// stale lock file from a crash never blocks a start.
#[derive(Debug)]
pub struct StorageLock {
    _file: File,
}

/// Name of the lock file in the storage directory.
pub const LOCK_FILE: &str = "hotleased.lock";

impl StorageLock {
    /// Create the directory when missing (0700), lock it, write our pid,
    /// and tighten files of the directory that are open to others (from
    /// older versions that created the lease log 0644).
    pub fn acquire(dir: &Path) -> Result<StorageLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.display().to_string(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        warn_if_open(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: dir.display().to_string(),
                    // the holder may not have written it yet
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                    lock: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        tighten_files(dir).map_err(io)?;
        Ok(StorageLock { _file: file })
    }
}

/// Create `dir` (and missing parents) with mode 0700 for `dir` itself;
/// an existing directory keeps its mode (the package's is 0750).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

/// Warn when others may read the storage directory (the daemon does not
/// change the mode of a directory it did not create).
fn warn_if_open(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format_args!("{mode:04o}"),
            "storage dir is open to other users (it holds lease data and secrets): chmod 0700"
        );
    }
    Ok(())
}

/// Make every regular file directly in `dir` private (0600 at most).
fn tighten_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // symlink_metadata: a link is neither followed nor changed
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            let private = mode & 0o600;
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(private))?;
            tracing::info!(
                file = %entry.path().display(),
                from = format_args!("{mode:04o}"),
                to = format_args!("{private:04o}"),
                "made a storage file private"
            );
        }
    }
    Ok(())
}

impl Store {
    /// The files of `dir`, for reading (`hotleased check`): creates nothing.
    pub fn at(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
            #[cfg(test)]
            gate: None,
            #[cfg(test)]
            confirm_gate: None,
        }
    }

    pub fn new(dir: &Path) -> std::io::Result<Store> {
        create_private_dir(dir)?;
        Ok(Store::at(dir))
    }

    fn startup_path(&self) -> PathBuf {
        self.dir.join("startup.xml")
    }

    fn confirm_path(&self) -> PathBuf {
        self.dir.join("confirmed-commit.toml")
    }

    /// The startup datastore's XML, or None when it was never written.
    pub fn read_startup(&self) -> std::io::Result<Option<String>> {
        read_opt(&self.startup_path())
    }

    pub fn write_startup(&self, xml: &str) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(g) = &self.gate {
            g.pass();
        }
        write_atomic(&self.startup_path(), xml.as_bytes())
    }

    pub fn delete_startup(&self) -> std::io::Result<()> {
        remove_opt(&self.startup_path())
    }

    pub fn read_confirm(&self) -> std::io::Result<Option<PersistedConfirm>> {
        match read_opt(&self.confirm_path())? {
            None => Ok(None),
            Some(s) => toml::from_str(&s)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }

    pub fn write_confirm(&self, c: &PersistedConfirm) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(g) = &self.confirm_gate {
            g.pass();
        }
        let text = toml::to_string(c).map_err(std::io::Error::other)?;
        write_atomic(&self.confirm_path(), text.as_bytes())
    }

    pub fn delete_confirm(&self) -> std::io::Result<()> {
        remove_opt(&self.confirm_path())
    }
}

fn read_opt(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_opt(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Write a file atomically with mode 0600 (configuration may hold secrets).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_and_confirm_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path()).unwrap();
        assert_eq!(s.read_startup().unwrap(), None);
        s.write_startup("<vrrp/>").unwrap();
        assert_eq!(s.read_startup().unwrap().as_deref(), Some("<vrrp/>"));
        let c = PersistedConfirm {
            persist_id: "x".into(),
            deadline_unix_ms: 5,
            rollback_xml: "<a/>".into(),
            pending_xml: "<b>\"q\"</b>".into(),
        };
        s.write_confirm(&c).unwrap();
        assert_eq!(s.read_confirm().unwrap(), Some(c));
        s.delete_confirm().unwrap();
        assert_eq!(s.read_confirm().unwrap(), None);
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn lock_is_exclusive_names_the_holder_and_dies_with_it() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("a/storage");
        let held = StorageLock::acquire(&dir).unwrap();
        // created private, parents too
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        // flock is per open file: a second open in this process conflicts
        // just as another process's would
        let err = StorageLock::acquire(&dir).unwrap_err();
        let line = err.to_string();
        let pid = std::process::id().to_string();
        assert!(
            matches!(&err, LockError::Held { pid: p, .. } if *p == pid),
            "{line}"
        );
        assert!(line.contains(&format!("pid {pid}")), "{line}");
        drop(held);
        let _again = StorageLock::acquire(&dir).unwrap();
    }

    #[test]
    fn lock_makes_the_files_private_and_keeps_the_dir_mode() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let log = dir.join("leases.log");
        std::fs::write(&log, b"x").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _held = StorageLock::acquire(dir).unwrap();
        assert_eq!(mode(&log), 0o600);
        // the package's 0750 stays; only files are changed
        assert_eq!(mode(dir), 0o750);
        assert_eq!(mode(&sub), 0o755);
        // a file in the way of the directory is an error, not a panic
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            StorageLock::acquire(&file),
            Err(LockError::Io { .. })
        ));
    }
}

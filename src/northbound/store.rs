//! Files in the storage directory: the startup datastore and a pending
//! persisted confirmed commit. Every write is atomic (temp file, fsync,
//! rename, fsync of the directory), so a crash leaves the old or the new
//! file, never a torn one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Paths of the files the northbound persists.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
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

impl Store {
    pub fn new(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
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
}

//! The gateway's secret files: the ledger signing key and the SQLite
//! database (every request, justification and context) must be readable by
//! their owner only. signoff creates both with mode 0600 and refuses to use
//! one that the group or others can read, naming the file and the fix.

use crate::config::Config;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The files of `config` that must be private: the ledger key and, for a
/// SQLite database, its file and the `-wal`/`-shm` files beside it.
pub fn secret_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config.ledger_key.clone()];
    if let Some(db) = sqlite_file(&config.database) {
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        let shm = PathBuf::from(format!("{}-shm", db.display()));
        files.extend([db, wal, shm]);
    }
    files
}

/// The file a `sqlite://` URL names (not for in-memory databases).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(file))
}

/// Fails with one line naming the first existing file in `files` that its
/// group or others may read or write, and the command that fixes it.
/// Missing files are fine: signoff creates them 0600.
pub fn require_private(files: &[PathBuf]) -> Result<()> {
    for f in files {
        check_private(f)?;
    }
    Ok(())
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot inspect {}: {e}", path.display()),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} has mode {mode:04o}: the group or others can access it; run `chmod 600 {}` and start again",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ledger.key");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = require_private(std::slice::from_ref(&f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{} has mode 0644: the group or others can access it; run `chmod 600 {}` and start again",
                f.display(),
                f.display()
            )
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(require_private(&[f, dir.path().join("missing")]).is_ok());
    }

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            sqlite_file("sqlite:///a/b.db?mode=rwc"),
            Some(PathBuf::from("/a/b.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x@y/z"), None);
    }
}

//! One process per data dir: a node holds an exclusive lock on `lock` in its data dir for as
//! long as it runs. A second process started on the same dir by mistake would open the same
//! logs (and could zero the tail of the one in use) before failing on its ports; it is refused
//! first, with a message that says why.

use std::fs::{File, OpenOptions};
use std::path::Path;

const FILE_NAME: &str = "lock";

/// The lock on a data dir, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Locks `dir` (which must exist) for this process, or says which dir is in use.
pub fn lock(dir: &Path) -> Result<DirLock, String> {
    let path = dir.join(FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match crate::sys::try_lock_exclusive(&file) {
        Ok(true) => Ok(DirLock { _file: file }),
        Ok(false) => Err(format!(
            "{} is in use by another process (it holds a lock on {}): two processes on one data \
             dir would write the same logs; stop the other one first",
            dir.display(),
            path.display()
        )),
        Err(error) => Err(format!("cannot lock {}: {error}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_dir_is_refused_until_the_lock_is_dropped() {
        let dir = std::env::temp_dir().join(format!("cohort-dir-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = lock(&dir).unwrap();
        let refused = lock(&dir).unwrap_err();
        assert!(refused.contains("in use by another process"), "{refused}");
        drop(held);
        lock(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Small files replaced whole and durably: a crash leaves either the old content or the new.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path`'s temporary twin (`path` + `.tmp`), syncs it, renames it over
/// `path` and syncs the directory. On failure the temporary file is removed (what was written
/// of it would only take room a full disk lacks) and `path` is untouched. Two calls for the
/// same `path` must not run at once: they share the temporary twin. (Snapshot files are
/// written on the core's blocking pool, one thread per executor, so one at a time; the loop
/// writes one itself only for a snapshot that reached Raft unstored, while no store of it
/// runs.)
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_twin(path);
    let written = File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| fs::rename(&temporary, path)) {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, each made durable: the parent of every directory
/// created is synced, so a crash cannot take away a directory whose files were synced.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    create_dir_all(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => File::open(parent)?.sync_all(),
        // Made meanwhile by someone else, who makes it durable.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(error) => Err(error),
    }
}

/// `path` with `.tmp` appended to its file name.
pub fn temporary_twin(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("cohort-durable-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("thing.id");
        replace_file(&path, b"one").unwrap();
        replace_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(temporary_twin(&path), dir.join("thing.id.tmp"));
        assert!(!temporary_twin(&path).exists());
        // A failed write (its directory is gone) leaves nothing behind.
        let gone = dir.join("gone").join("thing.id");
        assert!(replace_file(&gone, b"three").is_err());
        // Directories are made with their parents; made again, nothing changes.
        let deep = dir.join("a").join("b");
        create_dir_all(&deep).unwrap();
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        // Under a file, an error.
        assert!(create_dir_all(&path.join("c")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

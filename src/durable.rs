//! Small files replaced whole and durably: a crash leaves either the old content or the new.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path`'s temporary twin (`path` + `.tmp`), syncs it, renames it over
/// `path` and syncs the directory. On failure the temporary file is removed (what was written
/// of it would only take room a full disk lacks) and `path` is untouched. Two calls for the
/// same `path` must not run at once: they share the temporary twin. (Snapshot files are
/// written on the core's blocking pool, one thread per executor, so one at a time; the loop
/// writes one itself only for a snapshot that reached Raft unstored, while no store of it
/// runs.)
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_via_twin(path, |temporary| write_cached(temporary, bytes))
}

/// How [`replace_file_past_cache`] wrote a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// With O_DIRECT: from the caller's buffer to the device, no copy in the page cache.
    Direct,
    /// Through the page cache: the file system refuses O_DIRECT (tmpfs does).
    Cached,
}

/// [`replace_file`] for large files (snapshots): the bytes go to the device with O_DIRECT
/// where the file system allows it. A buffered write copies every byte into the page cache
/// and has the kernel write those pages back: here that cost about 15 times the CPU of the
/// same O_DIRECT write (`dd` of 800 MB in 4 MiB blocks with an fsync: 1.1–6.0 s of system
/// time against 0.08 s), and it fills the page cache with files read only at a restart.
pub fn replace_file_past_cache(path: &Path, bytes: &mut BlockBytes) -> io::Result<Written> {
    replace_via_twin(path, |temporary| match write_direct(temporary, bytes) {
        // Refused at the open (tmpfs) or at the write (a file system that takes the flag
        // but not the alignment): written as any other file.
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            write_cached(temporary, bytes.as_slice()).map(|()| Written::Cached)
        }
        written => written,
    })
}

/// Writes the file through `write` as `path`'s temporary twin, then puts it in `path`'s
/// place durably (see [`replace_file`]).
fn replace_via_twin<T>(path: &Path, write: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let temporary = temporary_twin(path);
    let written = write(&temporary).and_then(|made| fs::rename(&temporary, path).map(|()| made));
    let made = match written {
        Ok(made) => made,
        Err(error) => {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(made)
}

fn write_cached(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn write_direct(path: &Path, bytes: &mut BlockBytes) -> io::Result<Written> {
    let len = bytes.as_slice().len();
    let Some(blocks) = bytes.padded() else {
        // Grown past its capacity, the buffer moved off its alignment.
        return write_cached(path, bytes.as_slice()).map(|()| Written::Cached);
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    file.write_all(blocks)?;
    // The last block's padding cut off; the sync below makes the length durable with the
    // bytes (O_DIRECT alone leaves them in the device's cache and the size unsynced).
    file.set_len(len as u64)?;
    file.sync_all()?;
    Ok(Written::Direct)
}

/// The alignment (of address, length and file offset) that O_DIRECT asks for: a device's
/// logical block size, 512 or 4096 bytes.
const DIRECT_BLOCK_BYTES: usize = 4096;

/// Bytes laid out for an O_DIRECT write: they start at a block-aligned address, with room
/// behind them to pad their last block.
pub struct BlockBytes {
    /// The bytes from `start` on, then (once padded) zeros to the end of their last block.
    buf: Vec<u8>,
    /// Where the bytes start in `buf`: its first block-aligned address.
    start: usize,
    len: usize,
}

impl BlockBytes {
    /// Room for `bytes` bytes; more may be added, but then an O_DIRECT write may not be
    /// possible (the buffer moves when it grows), and the file is written through the cache.
    pub fn with_capacity(bytes: usize) -> BlockBytes {
        let mut buf: Vec<u8> = Vec::with_capacity(bytes + 2 * DIRECT_BLOCK_BYTES);
        // Where `align_offset` cannot say (usize::MAX), the check in `padded` fails.
        let start = buf.as_ptr().align_offset(DIRECT_BLOCK_BYTES);
        let start = if start < DIRECT_BLOCK_BYTES { start } else { 0 };
        buf.resize(start, 0);
        BlockBytes { buf, start, len: 0 }
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.truncate(self.start + self.len);
        self.buf.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The bytes padded with zeros to whole blocks, if they still start block-aligned.
    fn padded(&mut self) -> Option<&[u8]> {
        let end = self.start + self.len.next_multiple_of(DIRECT_BLOCK_BYTES);
        if end > self.buf.capacity() {
            return None;
        }
        self.buf.resize(end, 0);
        let blocks = &self.buf[self.start..];
        (blocks.as_ptr().align_offset(DIRECT_BLOCK_BYTES) == 0).then_some(blocks)
    }
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

    #[test]
    fn files_past_the_cache_read_back_whole_and_go_direct_where_the_file_system_allows() {
        let name = format!("cohort-durable-direct-{}", std::process::id());
        let mut dirs = vec![std::env::temp_dir().join(&name)];
        // tmpfs refuses O_DIRECT: there the file goes through the cache.
        if Path::new("/dev/shm").is_dir() {
            dirs.push(Path::new("/dev/shm").join(&name));
        }
        for dir in dirs {
            fs::create_dir_all(&dir).unwrap();
            let direct_allowed = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(dir.join("probe"))
                .is_ok();
            let expected = if direct_allowed {
                Written::Direct
            } else {
                Written::Cached
            };
            let path = dir.join("big.snap");
            for len in [0, 1, 4095, 4096, 4097, 3 * 4096 + 17] {
                let content: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                let mut bytes = BlockBytes::with_capacity(len);
                bytes.extend_from_slice(&content[..len / 2]);
                bytes.extend_from_slice(&content[len / 2..]);
                assert_eq!(
                    replace_file_past_cache(&path, &mut bytes).unwrap(),
                    expected
                );
                assert_eq!(fs::read(&path).unwrap(), content, "{len} bytes in {dir:?}");
                assert!(!temporary_twin(&path).exists());
            }
            // Grown past its room, the buffer moved: still written whole, through the cache.
            let mut bytes = BlockBytes::with_capacity(10);
            bytes.extend_from_slice(&[5; 10]);
            bytes.extend_from_slice(&[6; 3 * 8192]);
            assert_eq!(
                replace_file_past_cache(&path, &mut bytes).unwrap(),
                Written::Cached
            );
            assert_eq!(fs::read(&path).unwrap(), bytes.as_slice());
            assert_eq!(fs::metadata(&path).unwrap().len(), 10 + 3 * 8192);
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

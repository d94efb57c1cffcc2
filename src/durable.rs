//! Files replaced whole and durably (a crash leaves either the old content or the new), large
//! ones past the page cache, and read back as text; directories created durably.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, BytesMut};

/// Writes `bytes` to `path`'s temporary twin (`path` + `.tmp`), syncs it, renames it over
/// `path` and syncs the directory. On failure before the rename the temporary file is removed
/// (what was written of it would only take room a full disk lacks) and `path` is untouched;
/// if the directory's sync fails after it, `path` may hold the new content, not durably (a
/// crash may bring the old back). Two calls for the same `path` must not run at once: they
/// share the temporary twin. (Snapshot files are written on the core's blocking pool, one
/// thread per executor, so one at a time; the loop writes one itself only for a snapshot
/// that reached Raft unstored, while no store of it runs.)
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_via_twin(path, |temporary| write_file(temporary, &[bytes], false))
}

/// The text of one of the small files a node keeps in its data dir (its identity, membership,
/// incarnations), None where there is none. Bytes that are not UTF-8 are an error of kind
/// `InvalidData` that says so in words a caller puts after "is damaged: ", with what to do
/// about that file, as for any other damage (found by hand: a byte of 0xFF written over each
/// file gave "stream did not contain valid UTF-8" and nothing more).
pub fn read_text(path: &Path) -> io::Result<Option<String>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    String::from_utf8(bytes).map(Some).map_err(|error| {
        let at = error.utf8_error().valid_up_to();
        let why = format!("its bytes are not text (not UTF-8 from byte {at})");
        io::Error::new(io::ErrorKind::InvalidData, why)
    })
}

/// How [`replace_file_past_cache`] wrote a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Opened and written with O_DIRECT: from the caller's buffer to the device, no copy in
    /// the page cache (on file systems that honour the flag: some take it and copy all the
    /// same, as tmpfs since Linux 6.6 and ext4 mounted with `data=journal`).
    Direct,
    /// Through the page cache: the file system refuses O_DIRECT (as tmpfs before Linux 6.6).
    Cached,
}

/// [`replace_file`] for large files (snapshots): the file is `parts` one after the other,
/// written with O_DIRECT where the file system takes it, from the caller's buffers where they
/// are whole blocks at block-aligned addresses (see [`aligned_bytes_mut`]), else through one
/// buffer of a mebibyte (see [`direct_pieces`]). A buffered write copies every byte into the
/// page cache and has the kernel write those pages back: here that cost about 15 times the
/// CPU of the same O_DIRECT write (`dd` of 800 MB in 4 MiB blocks with an fsync: 1.1–6.0 s of
/// system time against 0.08 s), and it fills the page cache with files read only at a
/// restart.
pub fn replace_file_past_cache(path: &Path, parts: &[&[u8]]) -> io::Result<Written> {
    replace_via_twin(path, |temporary| {
        match write_file(temporary, parts, true) {
            // Refused at the open or at a write (a file system that takes the flag but not
            // this alignment): written as any other file.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {}
            written => return written.map(|()| Written::Direct),
        }
        write_file(temporary, parts, false).map(|()| Written::Cached)
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

/// Writes `parts` one after the other as the file at `path`, with O_DIRECT if `direct`, and
/// syncs it.
fn write_file(path: &Path, parts: &[&[u8]], direct: bool) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(if direct { libc::O_DIRECT } else { 0 })
        .open(path)?;
    if direct {
        direct_pieces(parts, |piece| file.write_all(piece))?;
    } else {
        parts.iter().try_for_each(|part| file.write_all(part))?;
    }
    // The last block's padding cut off; the sync makes the length durable with the bytes
    // (O_DIRECT alone leaves them in the device's cache and the size unsynced).
    file.set_len(parts.iter().map(|part| part.len() as u64).sum())?;
    file.sync_all()
}

/// The alignment (of address, length and file offset) that O_DIRECT asks for: a device's
/// logical block size, 512 or 4096 bytes.
pub const DIRECT_BLOCK_BYTES: usize = 4096;

/// The most bytes one write hands over. The block layer does not throttle O_DIRECT writes
/// as it does the page cache's writeback, so one write of a state of hundreds of MB would
/// fill the device's queue, and the WALs' syncs (this node's and its neighbours' on the same
/// disk) would wait behind all of it; in pieces of this size, a sync waits behind one.
const DIRECT_WRITE_BYTES_MAX: usize = 1 << 20;
const _: () = assert!(DIRECT_WRITE_BYTES_MAX.is_multiple_of(DIRECT_BLOCK_BYTES));

/// Hands `parts`, one after the other, to `write` in the pieces O_DIRECT takes: whole blocks
/// at block-aligned addresses, at most [`DIRECT_WRITE_BYTES_MAX`] each, the last one padded
/// with zeros. The whole blocks of a part at an aligned address go as they are, once what
/// came before them fills whole blocks; the rest is copied through one buffer of
/// [`DIRECT_WRITE_BYTES_MAX`], made at the first copy: a snapshot received from a leader (its
/// bytes off the alignment) costs that buffer, not a copy of itself (review 220).
fn direct_pieces(
    parts: &[&[u8]],
    mut write: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut bounce: Option<BytesMut> = None;
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let aligned = rest.as_ptr().align_offset(DIRECT_BLOCK_BYTES) == 0
                && rest.len() >= DIRECT_BLOCK_BYTES;
            if let Some(copied) = bounce.as_mut().filter(|copied| !copied.is_empty())
                && aligned
                && copied.len().is_multiple_of(DIRECT_BLOCK_BYTES)
            {
                write(copied)?;
                copied.clear();
            }
            if aligned && bounce.as_ref().is_none_or(|copied| copied.is_empty()) {
                let whole = rest.len() / DIRECT_BLOCK_BYTES * DIRECT_BLOCK_BYTES;
                let (piece, after) = rest.split_at(whole.min(DIRECT_WRITE_BYTES_MAX));
                write(piece)?;
                rest = after;
                continue;
            }
            let copied = bounce.get_or_insert_with(|| aligned_bytes_mut(DIRECT_WRITE_BYTES_MAX));
            let (taken, after) =
                rest.split_at((DIRECT_WRITE_BYTES_MAX - copied.len()).min(rest.len()));
            copied.extend_from_slice(taken);
            rest = after;
            if copied.len() == DIRECT_WRITE_BYTES_MAX {
                write(copied)?;
                copied.clear();
            }
        }
    }
    if let Some(copied) = bounce.as_mut().filter(|copied| !copied.is_empty()) {
        copied.resize(copied.len().next_multiple_of(DIRECT_BLOCK_BYTES), 0);
        write(copied)?;
    }
    Ok(())
}

/// An empty buffer for `capacity` bytes that start at a block-aligned address, so that their
/// whole blocks can be handed to [`replace_file_past_cache`] as they are. (They stay aligned
/// unless more than `capacity` bytes are put in it: then it moves.)
pub fn aligned_bytes_mut(capacity: usize) -> BytesMut {
    let mut bytes = BytesMut::with_capacity(capacity + DIRECT_BLOCK_BYTES);
    // `align_offset` may say it cannot (usize::MAX): then the bytes are simply not aligned.
    let before = bytes.as_ptr().align_offset(DIRECT_BLOCK_BYTES);
    if before < DIRECT_BLOCK_BYTES {
        bytes.put_bytes(0, before);
        bytes.advance(before);
    }
    bytes
}

/// Creates `dir` and its missing parents, each made durable: the parent of every directory
/// created is synced, so a crash cannot take away a directory whose files were synced. So is
/// the parent of the deepest one that exists already (`dir` itself, or the ancestor below
/// which the rest is made): a start cut short between making it and syncing its parent left
/// it made, maybe not durable (found in review; one fsync a start).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let existing = deepest_existing(dir, Path::is_dir)?;
    if let Some(parent) = existing.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        match sync_dir(parent) {
            // A parent this process may not read it may not sync either: nothing to do.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {}
            synced => synced?,
        }
    }
    create_missing_dir(dir)
}

/// The deepest of `dir` and its ancestors that `is_dir` finds, `.` last for a relative
/// path; an error where none is (a working directory that cannot be read).
fn deepest_existing(dir: &Path, is_dir: impl Fn(&Path) -> bool) -> io::Result<&Path> {
    let mut existing = dir;
    while !is_dir(existing) {
        let parent = parent_of(existing);
        if parent == existing {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "cannot make {}: none of the folders above it can be read",
                    dir.display()
                ),
            ));
        }
        existing = parent;
    }
    Ok(existing)
}

fn create_missing_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_of(dir);
    create_missing_dir(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        // Made meanwhile by someone else, who makes it durable.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(error) => Err(error),
    }
}

fn parent_of(dir: &Path) -> &Path {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    tests::DIRS_SYNCED.with(|synced| synced.borrow_mut().push(dir.to_path_buf()));
    File::open(dir)?.sync_all()
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

    thread_local! {
        /// The directories `create_dir_all` synced on this thread.
        pub static DIRS_SYNCED: std::cell::RefCell<Vec<PathBuf>> = const {
            std::cell::RefCell::new(Vec::new())
        };
    }

    /// Goal: a directory a start made but may not have made durable (cut short before it
    /// synced the parent) is made durable by the next start, which finds it made, whether
    /// it makes directories below it or not. Method: `create_dir_all` of a directory that
    /// exists syncs its parent; of one below a directory that exists, it syncs that one's
    /// parent too.
    /// Goal (found in review): where no folder above the one to make can be read (a
    /// working directory on a stale network mount), making it fails saying so; it looped
    /// for ever at start. Method: the folder check answers no for every path, relative
    /// and absolute.
    #[test]
    fn a_dir_with_no_readable_folder_above_it_is_an_error() {
        for dir in ["data/core-0", "/var/data"] {
            let error = deepest_existing(Path::new(dir), |_| false).unwrap_err();
            assert!(
                error.to_string().contains("none of the folders above it"),
                "{error}"
            );
        }
        let found = deepest_existing(Path::new("a/b/c"), |p| p == Path::new("a"));
        assert_eq!(found.unwrap(), Path::new("a"));
    }

    #[test]
    fn a_directory_found_made_has_its_parent_synced() {
        let dir = std::env::temp_dir().join(format!("cohort-durable-made-{}", std::process::id()));
        let made = dir.join("core-0");
        fs::create_dir_all(&made).unwrap();
        DIRS_SYNCED.with(|synced| synced.borrow_mut().clear());
        create_dir_all(&made).unwrap();
        let synced = DIRS_SYNCED.with(|synced| synced.take());
        assert_eq!(synced, std::slice::from_ref(&dir));
        let below = made.join("a").join("b");
        create_dir_all(&below).unwrap();
        let synced = DIRS_SYNCED.with(|synced| synced.take());
        assert_eq!(synced, [dir.clone(), made.clone(), made.join("a")]);
        fs::remove_dir_all(&dir).unwrap();
    }

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

    /// Goal: what O_DIRECT writes is whole blocks at aligned addresses, at most a mebibyte
    /// each, the parts one after the other, padded; the whole blocks of an aligned part go
    /// from where they are once what came before fills whole blocks, and bytes off the
    /// alignment (a snapshot received from a leader) through one buffer of a mebibyte, not a
    /// copy of their own (review 220). Method: a head of one block in a plain vector, then a
    /// large aligned body or the same bytes off the alignment, then four bytes.
    #[test]
    fn writes_go_in_aligned_pieces_of_at_most_a_mebibyte() {
        let head = vec![1u8; DIRECT_BLOCK_BYTES];
        let len = 2 * DIRECT_WRITE_BYTES_MAX + 3 * DIRECT_BLOCK_BYTES + 100;
        let content: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut aligned = aligned_bytes_mut(len);
        aligned.extend_from_slice(&content);
        let shifted: Vec<u8> = [0].iter().chain(&content).copied().collect();
        for (body, copies_max) in [(&aligned[..], 2), (&shifted[1..], usize::MAX)] {
            let parts = [&head[..], body, b"tail"];
            let mut pieces: Vec<Vec<u8>> = Vec::new();
            let mut copies = 0;
            let range = body.as_ptr_range();
            direct_pieces(&parts, |piece| {
                assert!(piece.len() <= DIRECT_WRITE_BYTES_MAX);
                assert!(piece.len().is_multiple_of(DIRECT_BLOCK_BYTES));
                assert_eq!(piece.as_ptr().align_offset(DIRECT_BLOCK_BYTES), 0);
                copies += usize::from(!range.contains(&piece.as_ptr()));
                pieces.push(piece.to_vec());
                Ok(())
            })
            .unwrap();
            let mut expected = parts.concat();
            expected.resize(expected.len().next_multiple_of(DIRECT_BLOCK_BYTES), 0);
            assert_eq!(pieces.concat(), expected);
            assert!(copies <= copies_max, "{copies} pieces copied");
        }
    }

    #[test]
    fn files_past_the_cache_read_back_whole_and_go_direct_where_the_file_system_allows() {
        let name = format!("cohort-durable-direct-{}", std::process::id());
        let mut dirs = vec![std::env::temp_dir().join(&name)];
        // tmpfs refused O_DIRECT before Linux 6.6: there the file went through the cache.
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
            let several_pieces = 2 * DIRECT_WRITE_BYTES_MAX + 4099;
            for len in [0, 1, 4095, 4096, 4097, 3 * 4096 + 17, several_pieces] {
                let content: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                let check = |parts: &[&[u8]], how: Written| {
                    let written = replace_file_past_cache(&path, parts).unwrap();
                    assert_eq!(written, how, "{len} bytes in {dir:?}");
                    assert_eq!(fs::read(&path).unwrap(), content, "{len} bytes in {dir:?}");
                    assert!(!temporary_twin(&path).exists());
                };
                // An aligned buffer, its whole blocks as they are.
                let mut body = aligned_bytes_mut(len);
                body.extend_from_slice(&content);
                check(&[&body], expected);
                // Parts; bytes off the alignment, direct too (copied a mebibyte at a time).
                check(&[&content[..len / 2], &content[len / 2..]], expected);
                let shifted: Vec<u8> = [0].iter().chain(&content).copied().collect();
                check(&[&shifted[1..1], &shifted[1..]], expected);
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

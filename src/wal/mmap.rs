//! The only unsafe code of the WAL: a shared read-only map of a segment file, handing a file
//! descriptor to glommio, writing a file range back to the device, and dropping a file's
//! cached pages.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// A `MAP_SHARED` read-only map of a whole segment file (writes go through `pwrite` or
/// O_DIRECT writes, see `file.rs`).
///
/// Invariants that make the unsafe blocks below sound, upheld by the WAL and `FileStore`:
/// 1. The file is ours alone (the data dir belongs to one process) and is never shortened
///    while mapped, so every address in `0..len` stays backed by the file: no SIGBUS from a
///    short file. (A page the device cannot read raises SIGBUS at its read all the same: a
///    fault of the medium, not of this code. `Storage::check_readable` finds such pages when
///    a WAL opens; one that fails after that stops the process.)
/// 2. The file's bytes change (by `pwrite` or an O_DIRECT write issued by the thread that owns
///    the WAL) only at ranges no live [`Mapping::view`] covers, or to the same bytes: the WAL
///    writes at or after its append cursor (an O_DIRECT write rewrites the whole block the
///    cursor is in, with the bytes it already holds) and views only cover records behind it;
///    a segment is recycled (written from the start again) only when no view holds its map
///    (`Arc::strong_count == 1`).
pub struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Maps `len` bytes of `file`, pre-faulted (`MAP_POPULATE`) when `populate` so reads take
    /// no fault. Not for a file written with O_DIRECT: every such write would then have to
    /// unmap the pages it replaces from the page tables first.
    pub fn map(file: &File, len: usize, populate: bool) -> io::Result<Arc<Mapping>> {
        let mut options = MmapOptions::new();
        options.len(len);
        if populate {
            options.populate();
        }
        let raw = options.map_raw_read_only(file)?;
        Ok(Arc::new(Mapping { raw }))
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// A `Bytes` over `range` that keeps the map alive: a read with no copy.
    pub fn view(self: &Arc<Self>, range: Range<usize>) -> Bytes {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "view {range:?} past the map ({})",
            self.len()
        );
        Bytes::from_owner(View {
            map: Arc::clone(self),
            range,
        })
    }
}

struct View {
    map: Arc<Mapping>,
    range: Range<usize>,
}

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range is inside the map (asserted at creation), the map lives as long
        // as this view (the Arc), and nothing writes these bytes while the view lives
        // (invariant 2 of `Mapping`), so a shared slice over them is sound.
        unsafe {
            std::slice::from_raw_parts(
                self.map.raw.as_ptr().add(self.range.start),
                self.range.len(),
            )
        }
    }
}

/// A glommio handle on a duplicate of `file`'s descriptor, for io_uring fdatasync. Must be
/// called on a glommio executor thread (glommio ties the file to that thread's reactor).
pub fn glommio_file(file: &File) -> io::Result<glommio::io::BufferedFile> {
    let fd = file.try_clone()?.into_raw_fd();
    // SAFETY: `fd` is a fresh duplicate that nothing else owns; its ownership moves into the
    // BufferedFile, which closes it exactly once.
    Ok(unsafe { glommio::io::BufferedFile::from_raw_fd(fd) })
}

/// Writes `len` bytes of `file` from `offset` back to the device and waits until they are
/// there (`sync_file_range` with WAIT_BEFORE | WRITE | WAIT_AFTER). Unlike fdatasync it
/// flushes no metadata and no journal, and the device never sees more than this range at
/// once: a big file written this way, a chunk at a time, leaves room in the device's queue
/// for the WAL's syncs instead of flushing tens of MB ahead of them at its end.
pub(super) fn write_back(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (offset, len) = (
        i64::try_from(offset).map_err(io::Error::other)?,
        i64::try_from(len).map_err(io::Error::other)?,
    );
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range takes a descriptor (open for as long as `file` is borrowed)
    // and plain integers; it touches no memory of this process.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reserves `len` bytes of disk for `file` from its start (`posix_fallocate`): the blocks
/// read as zeros and a later write cannot fail for want of space. A file system without
/// fallocate gets zeros written instead (glibc does that).
pub(super) fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = i64::try_from(len).map_err(io::Error::other)?;
    // SAFETY: posix_fallocate takes a descriptor (open for as long as `file` is borrowed) and
    // plain integers; it touches no memory of this process.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Drops the clean cached pages of `file` from `offset` on (`posix_fadvise(DONTNEED)`), so
/// O_DIRECT writes there find no page to invalidate first. Only a hint: pages still dirty or
/// mapped stay.
pub(super) fn drop_cached(file: &File, offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let offset = i64::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: posix_fadvise takes a descriptor (open for as long as `file` is borrowed) and
    // plain integers; it touches no memory of this process.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// How many pages of the first `len` bytes of `file` are in the page cache (`mincore`).
#[cfg(test)]
pub(super) fn resident_pages(file: &File, len: usize) -> io::Result<usize> {
    let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
    // SAFETY: sysconf takes a constant and touches no memory of this process.
    let page_bytes =
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).map_err(io::Error::other)?;
    let mut pages = vec![0u8; len.div_ceil(page_bytes)];
    // SAFETY: `map` is a live mapping of `len` bytes at a page-aligned address, and `pages`
    // holds one byte per page of it, as mincore writes; nothing is read through the map.
    let rc = unsafe { libc::mincore(map.as_mut_ptr().cast(), len, pages.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pages.iter().filter(|&&page| page & 1 != 0).count())
}

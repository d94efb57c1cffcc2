//! The only unsafe code of the WAL: a shared writable map of a segment file, and handing a
//! file descriptor to glommio.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// A `MAP_SHARED` writable map of a whole segment file.
///
/// Invariants that make the unsafe blocks below sound, upheld by the WAL and `FileStore`:
/// 1. The file is ours alone (the data dir belongs to one process) and is never shortened
///    while mapped, so every address in `0..len` stays backed by the file: no SIGBUS. Segments
///    are created at full size and pre-zeroed, so a write never needs a block allocation
///    either (no SIGBUS on a full disk).
/// 2. Bytes are written only by the single thread that owns the WAL, through raw pointers,
///    and only at ranges no live [`Mapping::view`] covers: the WAL writes at or after its
///    append cursor and views only cover records behind it; a mapping is recycled (written
///    from the start again) only when no view holds it (`Arc::strong_count == 1`).
pub struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Maps `len` bytes of `file` and pre-faults them (`MAP_POPULATE`) so the hot path takes
    /// no major fault; the first write to a page then costs only a minor write fault.
    pub fn map(file: &File, len: usize) -> io::Result<Arc<Mapping>> {
        let raw = MmapOptions::new().len(len).populate().map_raw(file)?;
        Ok(Arc::new(Mapping { raw }))
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// A writable window onto `range`, for building a record in place. Panics when the range
    /// leaves the map (a WAL bug). The only caller is `FileStore::slot`, which holds
    /// `&mut FileStore` for the window's lifetime, so no two windows are alive at once.
    #[allow(clippy::mut_from_ref)]
    pub fn slot(&self, range: Range<usize>) -> &mut [u8] {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "slot {range:?} past the map ({})",
            self.len()
        );
        // SAFETY: the range is inside the map (asserted) and the map stays valid while `self`
        // lives (invariant 1). No other reference to these bytes exists: only this thread
        // writes, one window at a time (the caller's `&mut FileStore`), and no live view
        // covers a range the WAL writes (invariant 2).
        unsafe {
            std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().add(range.start), range.len())
        }
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

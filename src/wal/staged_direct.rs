//! The file store's staging buffer in `SyncMode::Direct`: the WAL builds its records straight
//! into the block-aligned buffer that the next sync's O_DIRECT write hands to the device, so
//! a byte is copied once on the loop thread (into the buffer), not twice.
//!
//! The buffer starts at the block the run's first byte is in; the bytes of that block before
//! the run (written by earlier syncs) are filled in when the run starts, as the write
//! rewrites the whole block.

use glommio::io::DmaBuffer;

use super::format::BLOCK_BYTES;

/// Capacity of a run's first buffer when no run came before: one batch of small records.
const FIRST_CAPACITY_BYTES: usize = 64 << 10;

/// The most a run's first buffer starts with. A rare huge run (recovery zeroing a torn tail
/// of tens of MiB in one write) must not make every later run start that big; a run that
/// needs more grows.
const CAPACITY_HINT_BYTES_MAX: usize = 4 << 20;

#[derive(Default)]
pub(super) struct DirectStaged {
    /// The run's buffer; its byte 0 is file offset `from`. `None` while nothing is staged.
    buf: Option<DmaBuffer>,
    /// File offset of the buffer's first byte: the start of the run's first block.
    from: usize,
    /// File offset of the run's first byte: bytes before it in the buffer are the block's
    /// earlier contents. While nothing is staged: where the last run ended.
    pub(super) start: usize,
    /// File offset just past the run's last byte.
    end: usize,
    /// Bytes the next run's buffer starts with: about what the last run needed.
    capacity_hint: usize,
    /// File offset no run goes past (the segment's size): a buffer never grows beyond it.
    end_max: usize,
}

impl DirectStaged {
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_none()
    }

    /// File offset just past the run.
    pub(super) fn end(&self) -> usize {
        self.end
    }

    /// Where a run started at `start` would begin its buffer (the start of its block).
    pub(super) fn block_start(start: usize) -> usize {
        start / BLOCK_BYTES * BLOCK_BYTES
    }

    /// Starts a run at file offset `start` of a segment of `end_max` bytes; `head` holds the
    /// file's bytes from the start of `start`'s block to `start`.
    pub(super) fn begin(&mut self, start: usize, head: &[u8], end_max: usize) {
        assert!(self.buf.is_none(), "a run begun over a staged one");
        self.from = Self::block_start(start);
        self.end_max = end_max;
        assert_eq!(head.len(), start - self.from, "head of a wrong length");
        let capacity = self.capacity_hint.max(FIRST_CAPACITY_BYTES);
        let mut buf = glommio::allocate_dma_buffer(capacity.min(self.room()).max(head.len()));
        buf.as_bytes_mut()[..head.len()].copy_from_slice(head);
        self.buf = Some(buf);
        self.start = start;
        self.end = start;
    }

    /// A writable window onto file range `start..end` of the run begun, for the caller to
    /// fill whole. A gap between the run's end and `start` is zeroed. The window may overlap
    /// bytes written before, anywhere at or after the run's start (recovery zeroes a torn
    /// tail the cursor then writes over).
    pub(super) fn slot(&mut self, start: usize, end: usize) -> &mut [u8] {
        assert!(
            start >= self.start,
            "slot at {start} behind the staged run at {}",
            self.start
        );
        self.reserve(end - self.from);
        let from = self.from;
        let buf = self.buf.as_mut().expect("a run begun").as_bytes_mut();
        if start > self.end {
            buf[self.end - from..start - from].fill(0);
        }
        self.end = self.end.max(end);
        &mut buf[start - from..end - from]
    }

    /// The most bytes a buffer of this run may need: to the end of the segment's last block.
    fn room(&self) -> usize {
        round_up(self.end_max.saturating_sub(self.from))
    }

    /// Grows the buffer to hold at least `len` bytes, keeping what it holds: to twice its
    /// size, but never past the segment's end (found in review: a run of 49 MiB of a 64 MiB
    /// segment grew a buffer of 48 MiB to 96).
    fn reserve(&mut self, len: usize) {
        let room = self.room();
        let buf = self.buf.as_mut().expect("reserve with a buffer");
        if len <= buf.len() {
            return;
        }
        let size = (2 * buf.len()).min(room).max(round_up(len));
        let mut grown = glommio::allocate_dma_buffer(size);
        let used = self.end - self.from;
        grown.as_bytes_mut()[..used].copy_from_slice(&buf.as_bytes()[..used]);
        self.buf = Some(grown);
    }

    /// Copies the run's bytes of file range `start..end` (within the run) into `out`, which
    /// is exactly as long.
    pub(super) fn copy_out(&self, start: usize, end: usize, out: &mut [u8]) {
        assert!(
            self.start <= start && end <= self.end,
            "copy_out {start}..{end} outside the run {}..{}",
            self.start,
            self.end
        );
        let buf = self.buf.as_ref().expect("copy_out of a staged run");
        out.copy_from_slice(&buf.as_bytes()[start - self.from..end - self.from]);
    }

    /// Hands over the run as the buffer of one write of whole blocks, zero-padded to the
    /// end of its last block, and the file offset it goes to; `None` when nothing is staged.
    /// The next run starts where this one ended.
    pub(super) fn take(&mut self) -> Option<(usize, DmaBuffer)> {
        let mut buf = self.buf.take()?;
        let len = round_up(self.end - self.from);
        buf.as_bytes_mut()[self.end - self.from..len].fill(0);
        buf.trim_to_size(len);
        // A quarter more than this run needed, so a slightly bigger next run does not grow.
        self.capacity_hint = round_up(len + len / 4).min(CAPACITY_HINT_BYTES_MAX);
        self.start = self.end;
        Some((self.from, buf))
    }
}

fn round_up(len: usize) -> usize {
    len.next_multiple_of(BLOCK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(future: F) -> F::Output {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("executor")
            .run(future)
    }

    #[test]
    fn a_run_grows_keeps_its_head_zeroes_gaps_and_pads_its_last_block() {
        run(async {
            // The allocator hands out memory as it was left: dirty it first, so the zeroed
            // gap and the zero padding below are the run's own doing.
            for bytes in [FIRST_CAPACITY_BYTES, 2 * FIRST_CAPACITY_BYTES] {
                glommio::allocate_dma_buffer(bytes)
                    .as_bytes_mut()
                    .fill(0xFF);
            }
            let mut staged = DirectStaged::default();
            let head = [5u8; 100];
            let first = BLOCK_BYTES + 100;
            staged.begin(first, &head, usize::MAX / 2);
            staged.slot(first, first + 8).fill(1);
            // A gap, then a slot bigger than the first buffer: the buffer grows.
            let big = FIRST_CAPACITY_BYTES + 3;
            let at = first + 16;
            staged.slot(at, at + big).fill(2);
            // Writing over bytes of the run (recovery zeroing a torn tail) is allowed.
            staged.slot(first + 4, first + 6).fill(3);
            let end = at + big;
            assert_eq!(staged.end(), end);

            let mut expected = vec![5u8; 100];
            expected.extend([1, 1, 1, 1, 3, 3, 1, 1]);
            expected.extend([0; 8]);
            expected.extend(vec![2; big]);
            let mut out = vec![0; end - first - 2];
            staged.copy_out(first + 1, end - 1, &mut out);
            assert_eq!(out, expected[101..expected.len() - 1]);

            let (offset, buf) = staged.take().expect("a staged run");
            assert_eq!(offset, BLOCK_BYTES);
            assert_eq!(buf.len() % BLOCK_BYTES, 0);
            assert_eq!(&buf.as_bytes()[..expected.len()], &expected[..]);
            assert!(buf.as_bytes()[expected.len()..].iter().all(|&b| b == 0));
            assert!(staged.is_empty());
            assert_eq!(staged.start, end);
            assert!(staged.take().is_none());
        });
    }

    #[test]
    fn one_huge_run_does_not_make_every_later_run_start_huge() {
        run(async {
            let mut staged = DirectStaged::default();
            staged.begin(0, &[], usize::MAX / 2);
            staged.slot(0, 5 * CAPACITY_HINT_BYTES_MAX).fill(0);
            staged.take().expect("a staged run");
            let end = staged.end();
            staged.begin(end, &[], usize::MAX / 2);
            let capacity = staged.buf.as_ref().expect("a run begun").len();
            assert_eq!(capacity, CAPACITY_HINT_BYTES_MAX);
        });
    }

    /// Goal (review 229): a run's buffer grows by doubling, but never past the segment's end.
    /// Method: a segment of 3 MiB; a run that grows from its first buffer past half of it.
    #[test]
    fn a_run_grows_no_bigger_than_its_segment() {
        run(async {
            let end_max = 3 << 20;
            let mut staged = DirectStaged::default();
            staged.begin(BLOCK_BYTES, &[], end_max);
            staged.slot(BLOCK_BYTES, 2 << 20).fill(1);
            staged.slot(2 << 20, end_max).fill(2);
            let capacity = staged.buf.as_ref().expect("a run begun").len();
            assert_eq!(capacity, end_max - BLOCK_BYTES);
        });
    }
}

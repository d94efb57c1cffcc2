//! What a node allocates to decode a client's frame: measured by an allocator that counts
//! the bytes each thread holds, so that a frame of many small operations cannot make the
//! node hold several times the frame's size unaccounted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use cohort::kv::{Command, CommandError, Op, Ops};
use cohort::proto::client::{
    ClientFrame, Consistency, Request, decode_client_frame, decoded_bytes, encode_requests,
};
use cohort::wire::FrameEncoder;

/// Counts, per thread, the bytes allocated and not yet freed, and the most held at once.
struct Counting;

thread_local! {
    static HELD_BYTES: Cell<usize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(bytes: usize) {
    // `try_with`: the allocator also serves threads whose locals are being torn down.
    let _ = HELD_BYTES.try_with(|held| {
        held.set(held.get() + bytes);
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(held.get())));
    });
}

fn note_free(bytes: usize) {
    let _ = HELD_BYTES.try_with(|held| held.set(held.get().saturating_sub(bytes)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        note_free(layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A frame of `requests` requests of `ops` gets each, of one-byte keys.
fn frame_of_gets(requests: u64, ops: usize) -> Bytes {
    let get = Op::Get {
        key: Bytes::from_static(b"k"),
    };
    let requests: Vec<Request> = (1..=requests)
        .map(|sequence| Request {
            forward_to: 0,
            command: Command {
                client_id: 7,
                sequence,
                first_unacked: 1,
                ops: Ops::from_elem(get.clone(), ops),
            },
            consistency: Consistency::Stale,
        })
        .collect();
    let mut encoder = FrameEncoder::new();
    encode_requests(&mut encoder, &requests).expect("fits a frame");
    Bytes::from(encoder.to_frame_vec())
}

/// Decodes `frame`; returns what it decoded to, the bytes that decoding left held, and the
/// most it held at once beyond what was held before.
fn decode_measured(frame: &Bytes) -> (ClientFrame, usize, usize) {
    let before = HELD_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(before));
    let decoded = decode_client_frame(frame).expect("a well-formed frame");
    let held = HELD_BYTES.with(Cell::get) - before;
    let peak = PEAK_BYTES.with(Cell::get) - before;
    (decoded, held, peak)
}

/// Goal (found in review): a request of more operations than a command may hold is refused
/// before they are decoded; collecting them first took about 100 MiB for a 16 MiB frame of a
/// million one-byte gets. Method: one request of 600,000 gets (a 10 MB frame).
#[test]
fn a_request_of_too_many_operations_is_refused_before_they_are_decoded() {
    let frame = frame_of_gets(1, 600_000);
    let (decoded, _, peak) = decode_measured(&frame);
    let ClientFrame::Requests(requests) = decoded else {
        panic!("not requests: {decoded:?}");
    };
    let refused = requests[0].as_ref().expect_err("too many operations");
    assert_eq!(
        refused.error,
        CommandError::TooManyOperations { count: 600_000 }
    );
    assert!(peak < 64 << 10, "decoding held {peak} bytes at its peak");
}

/// Goal (found in review): the weight a node gives decoded requests in its core's inbox
/// (`decoded_bytes`, beside the frame's own bytes) is what they hold, so the inbox's bound
/// on memory holds for frames of many small operations, each of which takes several times
/// its bytes on the wire once decoded. Method: 512 requests of 1,024 one-byte gets (a frame
/// of 9 MB), and a frame of 4,096 one-get requests, against the bytes decoding left held.
#[test]
fn decoded_requests_are_weighed_as_what_they_hold() {
    for (requests, ops) in [(512, 1_024), (4_096, 1)] {
        let frame = frame_of_gets(requests, ops);
        let (decoded, held, _) = decode_measured(&frame);
        let ClientFrame::Requests(requests) = decoded else {
            panic!("not requests: {decoded:?}");
        };
        assert!(requests.iter().all(Result::is_ok));
        let weighed = decoded_bytes(&requests);
        assert!(
            weighed <= held && held - weighed < held / 20,
            "weighed {weighed} bytes, held {held}; the frame is {} bytes",
            frame.len()
        );
    }
}

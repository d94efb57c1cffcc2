//! A group's latest snapshot as one file next to the WAL, replaced atomically.
//!
//! Layout (little-endian), ending in a crc32 of everything before it:
//!
//! ```text
//! "CSN2" | group u32 | index u64 | term u64 |
//! voters | voters_outgoing | learners | learners_next   (each: count u32 | node u64 *)
//! auto_leave u8 | data_len u64 | zeros to the next multiple of 4096 bytes |
//! data | crc32 u32
//! ```
//!
//! The data starts on a block boundary so that it can go to the device with O_DIRECT from
//! the buffer it was encoded in (see `durable::replace_file_past_cache`). Files of the first
//! layout, "CSN1" (no zeros: the data right after its length), are still read. Every layout's
//! magic is "CSN" and one more byte: a file with another last byte is a later layout, said so
//! whatever its checksum (a later layout may check itself another way), never called damaged.
//!
//! Files are named by group and index, `group-<g>-<index>.snap`, so two writes of one group
//! (one taken locally on a blocking thread, one received from the leader) never replace each
//! other: the newest index wins. Write protocol: write `<name>.tmp`, fsync it, rename it to
//! `<name>`, fsync the directory, then delete the group's older files. The WAL's snapshot
//! marker is written only after that, so a marker never names a snapshot that is not on disk;
//! a crash in between leaves a file newer than the marker, which recovery prefers.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, BufMut, Bytes};

use crate::durable::{self, DIRECT_BLOCK_BYTES, Written};
use crate::raft::{ConfState, LogIndex, NodeId, Snapshot, SnapshotMeta, Term};

const MAGIC: &[u8; 4] = b"CSN2";
/// The data starts at a multiple of this in a CSN2 file: part of the layout, whatever the
/// block size of O_DIRECT writes.
const DATA_ALIGN_BYTES: usize = 4096;
const _: () = assert!(DATA_ALIGN_BYTES.is_multiple_of(DIRECT_BLOCK_BYTES));
/// The first layout's magic: no padding before the data.
const MAGIC_UNPADDED: &[u8; 4] = b"CSN1";
/// How every layout's magic starts, the last byte telling them apart.
const MAGIC_PREFIX: &[u8; 3] = b"CSN";

/// Whether this process said that snapshot files go through the page cache.
static SAID_CACHED: AtomicBool = AtomicBool::new(false);

pub(super) fn path(dir: &Path, group: u32, index: u64) -> PathBuf {
    dir.join(format!("group-{group}-{index:020}.snap"))
}

/// The indexes of the snapshot files of `group` in `dir`, ascending.
fn indexes(dir: &Path, group: u32) -> io::Result<Vec<u64>> {
    let prefix = format!("group-{group}-");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(index) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".snap"))
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            found.push(index);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The bytes of each group's newest snapshot file in `dir`, in one pass over it.
pub(super) fn newest_file_bytes(dir: &Path) -> io::Result<BTreeMap<u32, u64>> {
    let mut newest: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((group, index)) = (name.to_str())
            .and_then(|name| name.strip_prefix("group-")?.strip_suffix(".snap"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(group, index)| Some((group.parse().ok()?, index.parse().ok()?)))
        else {
            continue;
        };
        if newest.get(&group).is_none_or(|&(at, _)| at < index) {
            let bytes = entry.metadata().map_or(0, |meta| meta.len());
            newest.insert(group, (index, bytes));
        }
    }
    Ok(newest
        .into_iter()
        .map(|(group, (_, bytes))| (group, bytes))
        .collect())
}

/// Store `snapshot` of `group` durably; older snapshots of the group are deleted after.
/// The data goes to the device from where it is, with no copy, if it starts at a
/// block-aligned address (as a snapshot encoded here does: `aligned_bytes_mut`); else (a
/// snapshot received from a leader) through a buffer of a mebibyte.
pub fn write(dir: &Path, group: u32, snapshot: &Snapshot) -> io::Result<()> {
    let mut head = Vec::with_capacity(64);
    head.put_slice(MAGIC);
    head.put_u32_le(group);
    head.put_u64_le(snapshot.meta.index.0);
    head.put_u64_le(snapshot.meta.term.0);
    let conf = &snapshot.meta.conf_state;
    for list in [
        &conf.voters,
        &conf.voters_outgoing,
        &conf.learners,
        &conf.learners_next,
    ] {
        head.put_u32_le(list.len() as u32);
        list.iter().for_each(|node| head.put_u64_le(node.0));
    }
    head.put_u8(u8::from(conf.auto_leave));
    head.put_u64_le(snapshot.data.len() as u64);
    head.resize(head.len().next_multiple_of(DATA_ALIGN_BYTES), 0);
    let data = &snapshot.data[..];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(data);
    let crc = crc.finalize().to_le_bytes();
    let file = path(dir, group, snapshot.meta.index.0);
    let written = durable::replace_file_past_cache(&file, &[&head, data, &crc])?;
    if written == Written::Cached && !SAID_CACHED.swap(true, Ordering::Relaxed) {
        tracing::info!(
            dir = %dir.display(),
            "the file system refuses O_DIRECT: snapshot files are written through the page cache"
        );
    }
    let index = snapshot.meta.index.0;
    for older in indexes(dir, group)?.into_iter().filter(|&i| i < index) {
        let _ = fs::remove_file(path(dir, group, older));
    }
    Ok(())
}

/// The newest stored snapshot of `group`, if any. A damaged file is an error naming it.
pub fn read(dir: &Path, group: u32) -> Result<Option<Snapshot>, String> {
    let newest = indexes(dir, group)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .pop();
    let Some(index) = newest else {
        return Ok(None);
    };
    let file = path(dir, group, index);
    let bytes = fs::read(&file)
        .map(Bytes::from)
        .map_err(|error| format!("{}: {error}", file.display()))?;
    decode(&bytes, group)
        .map(Some)
        .map_err(|unread| match unread {
            Unread::OtherLayout => format!(
                "{}: a snapshot file of a later layout than this build reads: a newer build \
                 wrote it, or its first bytes are damaged. If this node ran a newer build, keep \
                 the file (it may hold the group's state up to its index) and run that build; \
                 if not, it is damaged: {REPLACE_THE_NODE}",
                file.display()
            ),
            Unread::Damaged(what) => format!(
                "{}: snapshot file is damaged ({what}); it holds the group's state up to its \
                 index, so the node will not start without it: {REPLACE_THE_NODE}",
                file.display()
            ),
        })
}

/// What to do with a node whose data is damaged (said after why).
pub const REPLACE_THE_NODE: &str = "what it acknowledged is on the other members: replace it \
     as a dead node (`cohort members remove --id` with its id, at another member, then start \
     a node with a new id and an empty data dir with --join), and keep this data dir to look \
     into";

/// Why a snapshot file was not read.
#[derive(Debug, PartialEq)]
enum Unread {
    /// Its magic names a layout this build does not know. Told apart before the checksum is
    /// checked: a later layout may check itself another way.
    OtherLayout,
    Damaged(&'static str),
}

fn decode(bytes: &Bytes, group: u32) -> Result<Snapshot, Unread> {
    let padded = match bytes.get(..4) {
        Some(magic) if magic == MAGIC => true,
        Some(magic) if magic == MAGIC_UNPADDED => false,
        // A later layout is numbered on: any other byte there is damage (found by a tester:
        // one flipped bit made `CSN"`, said to be a newer build's).
        Some(magic) if magic.starts_with(MAGIC_PREFIX) && magic[3].is_ascii_digit() => {
            return Err(Unread::OtherLayout);
        }
        _ => return Err(Unread::Damaged("bad magic")),
    };
    decode_checked(bytes, group, padded).map_err(Unread::Damaged)
}

/// A file of a layout this build reads: CSN2 if `padded`, else CSN1.
fn decode_checked(bytes: &Bytes, group: u32, padded: bool) -> Result<Snapshot, &'static str> {
    let body = bytes.len().checked_sub(4).ok_or("too short")?;
    let stored = u32::from_le_bytes(bytes[body..].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..body]) != stored {
        return Err("checksum mismatch");
    }
    let mut r = bytes.slice(..body);
    let need = |r: &Bytes, n: usize| {
        if r.remaining() < n {
            Err("truncated")
        } else {
            Ok(())
        }
    };
    need(&r, 24)?;
    r.advance(4);
    if r.get_u32_le() != group {
        return Err("names another group");
    }
    let index = LogIndex(r.get_u64_le());
    let term = Term(r.get_u64_le());
    let mut lists: [Vec<NodeId>; 4] = Default::default();
    for list in &mut lists {
        need(&r, 4)?;
        let count = r.get_u32_le() as usize;
        need(&r, count.checked_mul(8).ok_or("count overflows")?)?;
        *list = (0..count).map(|_| NodeId(r.get_u64_le())).collect();
    }
    need(&r, 9)?;
    let auto_leave = r.get_u8() != 0;
    let len = usize::try_from(r.get_u64_le()).map_err(|_| "data length overflows")?;
    if padded {
        let head = body - r.remaining();
        let zeros = head.next_multiple_of(DATA_ALIGN_BYTES) - head;
        need(&r, zeros)?;
        r.advance(zeros);
    }
    if r.remaining() != len {
        return Err("data length does not match the file");
    }
    let [voters, voters_outgoing, learners, learners_next] = lists;
    Ok(Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            conf_state: ConfState {
                voters,
                voters_outgoing,
                learners,
                learners_next,
                auto_leave,
            },
        },
        data: r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn a_snapshot_file_round_trips_and_damage_is_named() {
        let dir = std::env::temp_dir().join(format!("cohort-snapfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(42),
                term: Term(7),
                conf_state: ConfState {
                    voters: vec![NodeId(1), NodeId(2), NodeId(3)],
                    learners: vec![NodeId(4)],
                    ..ConfState::default()
                },
            },
            data: Bytes::from_static(b"state"),
        };
        assert_eq!(read(&dir, 5), Ok(None));
        write(&dir, 5, &snapshot).unwrap();
        assert_eq!(read(&dir, 5), Ok(Some(snapshot.clone())));
        // A newer one wins and the older is deleted; an older one written late does not win.
        let mut newer = snapshot.clone();
        newer.meta.index = LogIndex(50);
        write(&dir, 5, &newer).unwrap();
        assert_eq!(indexes(&dir, 5).unwrap(), [50]);
        write(&dir, 5, &snapshot).unwrap();
        assert_eq!(read(&dir, 5), Ok(Some(newer.clone())));
        let file = path(&dir, 5, 50);
        let mut bytes = fs::read(&file).unwrap();
        bytes[30] ^= 1;
        fs::write(&file, &bytes).unwrap();
        let error = read(&dir, 5).unwrap_err();
        assert!(
            error.contains("group-5-") && error.contains("checksum"),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn aligned_data_goes_as_it_is_and_files_of_the_first_layout_are_read() {
        let dir = std::env::temp_dir().join(format!("cohort-snapfile-2-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let content: Vec<u8> = (0..3 * DIRECT_BLOCK_BYTES + 5).map(|i| i as u8).collect();
        let mut data = durable::aligned_bytes_mut(content.len());
        data.put_slice(&content);
        let data = data.freeze();
        assert_eq!(data.as_ptr().align_offset(DIRECT_BLOCK_BYTES), 0);
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(9),
                term: Term(2),
                conf_state: ConfState {
                    voters: vec![NodeId(1), NodeId(2)],
                    auto_leave: true,
                    ..ConfState::default()
                },
            },
            data,
        };
        write(&dir, 3, &snapshot).unwrap();
        assert_eq!(read(&dir, 3), Ok(Some(snapshot.clone())));
        // The data starts at byte 4096 (the layout's, whatever the block size of the
        // writes), the file ends with the checksum.
        let file = fs::read(path(&dir, 3, 9)).unwrap();
        assert_eq!(file.len(), 4096 + content.len() + 4);
        assert_eq!(file[4096..4096 + content.len()], content);
        // The same snapshot from data off the alignment (as one received from a leader):
        // copied, the same file.
        let mut shifted = BytesMut::from(&[0][..]);
        shifted.put_slice(&content);
        let mut unaligned = snapshot.clone();
        unaligned.data = shifted.freeze().slice(1..);
        assert_ne!(unaligned.data.as_ptr().align_offset(DIRECT_BLOCK_BYTES), 0);
        fs::remove_file(path(&dir, 3, 9)).unwrap();
        write(&dir, 3, &unaligned).unwrap();
        assert_eq!(fs::read(path(&dir, 3, 9)).unwrap(), file);
        // A layout of a newer build, which may check itself another way (here its last four
        // bytes are no crc32 of the rest): said so, not called damaged.
        let mut newer = file.clone();
        newer[..4].copy_from_slice(b"CSN9");
        fs::write(path(&dir, 3, 10), &newer).unwrap();
        let error = read(&dir, 3).unwrap_err();
        assert!(
            error.contains("later layout") && !error.contains("file is damaged"),
            "{error}"
        );
        // A flipped bit there is no layout (found by a tester: said to be a newer build's).
        newer[..4].copy_from_slice(b"CSN\"");
        fs::write(path(&dir, 3, 10), &newer).unwrap();
        let error = read(&dir, 3).unwrap_err();
        assert!(error.contains("file is damaged (bad magic)"), "{error}");
        fs::remove_file(path(&dir, 3, 10)).unwrap();
        // The first layout: the data right after its length.
        let mut old = MAGIC_UNPADDED.to_vec();
        old.put_u32_le(3);
        old.put_u64_le(12);
        old.put_u64_le(2);
        for list in [&[1u64, 2][..], &[], &[], &[]] {
            old.put_u32_le(list.len() as u32);
            list.iter().for_each(|node| old.put_u64_le(*node));
        }
        old.put_u8(1);
        old.put_u64_le(content.len() as u64);
        old.put_slice(&content);
        let crc = crc32fast::hash(&old);
        old.put_u32_le(crc);
        fs::write(path(&dir, 3, 12), &old).unwrap();
        let mut expected = snapshot.clone();
        expected.meta.index = LogIndex(12);
        assert_eq!(read(&dir, 3), Ok(Some(expected)));
        fs::remove_dir_all(&dir).unwrap();
    }
}

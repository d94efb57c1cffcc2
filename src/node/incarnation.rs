//! The incarnation of a core's data: a random number drawn when the core's dir is first used,
//! and a count of the starts on it, kept beside its log in `core-N/incarnation`. Its peers
//! record both at their first connection (the count as it grows) and refuse the core if it
//! comes back with another incarnation, or with fewer starts (see `transport::incarnations`):
//! same node id, another log or an older copy of it, so it may no longer hold what it
//! acknowledged nor the votes it gave. Per core, as the log and the connections are.

use std::fs;
use std::path::Path;

const FILE_NAME: &str = "incarnation";
const FORMAT: &str = "cohort core incarnation v1";

/// A core's incarnation for this start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incarnation {
    pub value: u64,
    /// This start: the count of starts on this data, this one included (1 for the first), in
    /// the high 32 bits, and a random number in the low 32, so two starts from one count (an
    /// older copy started again) differ. 0 if it could not be counted (a full disk).
    pub start: u64,
    /// Its data is new: drawn at this start in a dir with no log (a log without the file is
    /// one made before incarnations existed, or one that lost the file: not new).
    pub new: bool,
}

/// Counts this start in the core dir `dir` (which must exist), drawing an incarnation first
/// if it has none; recorded durably before it returns, so a start a peer sees is never
/// counted again.
pub fn begin(dir: &Path) -> Result<Incarnation, String> {
    let path = dir.join(FILE_NAME);
    let damaged = |why: &str| {
        format!(
            "{} is damaged: {why}. If the log beside it is intact, move the file away and start \
             the node: its peers refuse it, each naming the `incarnation=` and `starts=` to put \
             back in a file of those three lines; then start it again. If not, {}",
            path.display(),
            super::snapshot_file::REPLACE_THE_NODE
        )
    };
    let (value, starts, new) = match crate::durable::read_text(&path) {
        Ok(Some(text)) => {
            let (value, starts) = parse(&text).ok_or_else(|| {
                damaged(&format!(
                    "it is not `{FORMAT}`, incarnation=NUMBER and starts=NUMBER"
                ))
            })?;
            (value, starts, false)
        }
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            return Err(damaged(&error.to_string()));
        }
        Ok(None) => {
            let listing_failed = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
            let mut has_log = false;
            // An entry that cannot be read may be a log: fail rather than take the data for new.
            for entry in fs::read_dir(dir).map_err(listing_failed)? {
                let name = entry.map_err(listing_failed)?.file_name();
                has_log |= name.to_string_lossy().ends_with(".wal");
            }
            (draw(), 0, !has_log)
        }
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let count = starts + 1;
    match crate::durable::replace_file(&path, render(value, count).as_bytes()) {
        Ok(()) => Ok(Incarnation {
            value,
            start: count << 32 | (draw() & 0xFFFF_FFFF).max(1),
            new,
        }),
        // A node must start on a full disk (it serves reads and hands its groups off): this
        // start goes uncounted, as none (0), which peers neither check nor record. An
        // incarnation drawn at this start and never saved is still announced: peers that
        // recorded another refuse it (a data dir with a log and no incarnation file may be
        // another copy), though peers that record it refuse the next start too.
        Err(error)
            if !new
                && matches!(
                    error.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
        {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot count this start on a full disk: peers will not check it"
            );
            Ok(Incarnation {
                value,
                start: 0,
                new,
            })
        }
        Err(error) => Err(super::identity::cannot_write(&path, &error)),
    }
}

fn render(value: u64, starts: u64) -> String {
    format!("{FORMAT}\nincarnation={value}\nstarts={starts}\n")
}

fn parse(text: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT) {
        return None;
    }
    let value = lines.next()?.strip_prefix("incarnation=")?.parse().ok()?;
    // Files written before starts were counted have none.
    let starts: u64 = match lines.next() {
        Some(line) => line.strip_prefix("starts=")?.parse().ok()?,
        None => 0,
    };
    // A start is its count in 32 bits: a larger one is damage, not a count.
    let counted = starts < u64::from(u32::MAX);
    (lines.next().is_none() && value != 0 && counted).then_some((value, starts))
}

/// The process's random hash keys (drawn from the OS), the process id and the wall clock,
/// through SipHash; never 0, which means "none" on the wire.
fn draw() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(crate::clock::wall_nanos());
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_once_then_kept_with_starts_counted_and_new_only_without_a_log() {
        let dir = std::env::temp_dir().join(format!("cohort-incarnation-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let first = begin(&dir).unwrap();
        assert!(first.new && first.value != 0 && first.start >> 32 == 1);
        let second = begin(&dir).unwrap();
        assert_eq!(
            (second.value, second.start >> 32, second.new),
            (first.value, 2, false)
        );
        // An older copy started again: the same count, another start.
        fs::write(dir.join(FILE_NAME), render(first.value, 1)).unwrap();
        let forked = begin(&dir).unwrap();
        assert_eq!(forked.start >> 32, 2);
        assert_ne!(forked.start, second.start);
        // A log without the file (made before incarnations, or the file lost): not new.
        fs::remove_file(dir.join(FILE_NAME)).unwrap();
        fs::write(dir.join("00000000000000000001.wal"), b"").unwrap();
        let again = begin(&dir).unwrap();
        assert!(!again.new);
        assert_ne!(again.value, first.value);
        fs::write(dir.join(FILE_NAME), "something else\n").unwrap();
        assert!(begin(&dir).unwrap_err().contains("damaged"));
        fs::write(dir.join(FILE_NAME), b"\xff").unwrap();
        assert!(begin(&dir).unwrap_err().contains("is damaged"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_text_round_trips_and_zero_is_refused() {
        assert_eq!(parse(&render(42, 3)), Some((42, 3)));
        assert_eq!(parse(&render(0, 3)), None);
        assert_eq!(parse(&format!("{}more\n", render(42, 3))), None);
        assert_eq!(parse(&format!("{FORMAT}\nincarnation=42\n")), Some((42, 0)));
        assert_eq!(parse(&render(42, u64::from(u32::MAX))), None);
    }
}

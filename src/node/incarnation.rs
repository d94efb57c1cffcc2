//! The incarnation of a core's data: a random number drawn when the core's dir is first used,
//! kept beside its log in `core-N/incarnation`, never changed after. Its peers record it at
//! their first connection and refuse the core if it comes back with another one (see
//! `transport::incarnations`): same node id, another log, so it no longer holds what it
//! acknowledged nor the votes it gave. Per core, as the log and the connections are.

use std::fs;
use std::path::Path;

const FILE_NAME: &str = "incarnation";
const FORMAT: &str = "cohort core incarnation v1";

/// A core's incarnation, and whether its data is new: drawn at this start in a dir with no log
/// (a log without the file is one made before incarnations existed, or one that lost the file:
/// its data is not new).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incarnation {
    pub value: u64,
    pub new: bool,
}

/// The incarnation recorded in the core dir `dir` (which must exist), or a fresh one recorded
/// now.
pub fn read_or_draw(dir: &Path) -> Result<Incarnation, String> {
    let path = dir.join(FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let value = parse(&text).ok_or_else(|| {
                format!(
                    "{} is damaged: it is not `{FORMAT}` and incarnation=NUMBER",
                    path.display()
                )
            })?;
            return Ok(Incarnation { value, new: false });
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    }
    let has_log = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .any(|entry| entry.file_name().to_string_lossy().ends_with(".wal"));
    let value = draw();
    crate::durable::replace_file(&path, render(value).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Incarnation {
        value,
        new: !has_log,
    })
}

fn render(value: u64) -> String {
    format!("{FORMAT}\nincarnation={value}\n")
}

fn parse(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT) {
        return None;
    }
    let value = lines.next()?.strip_prefix("incarnation=")?.parse().ok()?;
    (lines.next().is_none() && value != 0).then_some(value)
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
    fn drawn_once_then_kept_and_new_only_without_a_log() {
        let dir = std::env::temp_dir().join(format!("cohort-incarnation-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let first = read_or_draw(&dir).unwrap();
        assert!(first.new && first.value != 0);
        assert_eq!(
            read_or_draw(&dir).unwrap(),
            Incarnation {
                value: first.value,
                new: false
            }
        );
        // A log without the file (made before incarnations, or the file lost): not new.
        fs::remove_file(dir.join(FILE_NAME)).unwrap();
        fs::write(dir.join("00000000000000000001.wal"), b"").unwrap();
        let again = read_or_draw(&dir).unwrap();
        assert!(!again.new);
        assert_ne!(again.value, first.value);
        fs::write(dir.join(FILE_NAME), "something else\n").unwrap();
        assert!(read_or_draw(&dir).unwrap_err().contains("damaged"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_text_round_trips_and_zero_is_refused() {
        assert_eq!(parse(&render(42)), Some(42));
        assert_eq!(parse(&render(0)), None);
        assert_eq!(parse(&format!("{}more\n", render(42))), None);
    }
}

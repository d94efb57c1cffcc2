//! The identity of a data dir: which cluster and node it belongs to and the layout its WAL was
//! written with (cores, groups). Checked at every start: a node restarted with another
//! `--groups` would map keys to other groups, with another `--cores` would look for groups in
//! the wrong WAL, and with another `--id` would speak with another node's votes.
//!
//! The file is `cohort.id` in the data dir, plain text, one `key=value` per line, written
//! atomically (temporary file, fsync, rename, fsync of the dir) at the first start.
//!
//! It also holds the dir's incarnation: a random number drawn when the dir is made, never
//! changed after. A node's peers record it at their first connection and refuse the node if it
//! comes back with another one (see `transport::incarnations`): same id, another data dir, so
//! it no longer holds what it acknowledged and may vote again in a term it voted in. Dirs made
//! before incarnations existed get one at their next start.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

const FILE_NAME: &str = "cohort.id";
const FORMAT: &str = "cohort data dir v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub node_id: u64,
    pub cores: u16,
    pub groups: u32,
}

impl Identity {
    fn render(&self, incarnation: u64) -> String {
        format!(
            "{FORMAT}\ncluster_id={}\nnode_id={}\ncores={}\ngroups={}\nincarnation={incarnation}\n",
            self.cluster_id, self.node_id, self.cores, self.groups
        )
    }

    /// The identity and the incarnation, which dirs made before incarnations lack.
    fn parse(text: &str) -> Result<(Identity, Option<u64>), String> {
        let lines: Vec<&str> = text.lines().collect();
        if lines.first() != Some(&FORMAT) {
            return Err(format!("does not start with `{FORMAT}`"));
        }
        let value = |at: usize, key: &str| -> Result<u64, String> {
            let line = lines.get(at).ok_or_else(|| format!("{key} is missing"))?;
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("`{line}` is not {key}=NUMBER"))
        };
        let identity = Identity {
            cluster_id: value(1, "cluster_id")?,
            node_id: value(2, "node_id")?,
            cores: u16::try_from(value(3, "cores")?).map_err(|_| "cores out of range")?,
            groups: u32::try_from(value(4, "groups")?).map_err(|_| "groups out of range")?,
        };
        let incarnation = match lines.len() {
            5 => None,
            6 => match value(5, "incarnation")? {
                0 => return Err("incarnation=0 is not an incarnation".into()),
                incarnation => Some(incarnation),
            },
            _ => return Err(format!("`{}` follows the last key", lines[6])),
        };
        Ok((identity, incarnation))
    }
}

/// A fresh incarnation: the process's random hash keys (drawn from the OS), the process id and
/// the wall clock, through SipHash; never 0, which means "none" on the wire.
fn draw_incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(crate::clock::wall_nanos());
    hasher.finish().max(1)
}

/// The identity recorded in `dir`, if it has one.
pub fn read(dir: &Path) -> Result<Option<Identity>, String> {
    Ok(read_with_incarnation(dir)?.map(|(identity, _)| identity))
}

fn read_with_incarnation(dir: &Path) -> Result<Option<(Identity, Option<u64>)>, String> {
    let path = dir.join(FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(text) => Identity::parse(&text)
            .map(Some)
            .map_err(|why| format!("{} is damaged: {why}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Check `dir` was made for `identity`, or record it there if the dir has none yet; returns
/// the dir's incarnation (drawn and recorded now if the dir has none).
pub fn check_or_record(dir: &Path, identity: Identity) -> Result<u64, String> {
    match read_with_incarnation(dir)? {
        Some((recorded, Some(incarnation))) if recorded == identity => Ok(incarnation),
        Some((recorded, None)) if recorded == identity => record(dir, identity),
        Some((recorded, _)) => Err(format!(
            "{} belongs to node {} of cluster {} with --cores {} --groups {}; this node was \
             started as node {} of cluster {} with --cores {} --groups {} (the layout of a data \
             dir cannot change: start with the recorded flags, or use an empty dir)",
            dir.display(),
            recorded.node_id,
            recorded.cluster_id,
            recorded.cores,
            recorded.groups,
            identity.node_id,
            identity.cluster_id,
            identity.cores,
            identity.groups
        )),
        None => record(dir, identity),
    }
}

fn record(dir: &Path, identity: Identity) -> Result<u64, String> {
    let incarnation = draw_incarnation();
    let path = dir.join(FILE_NAME);
    let temporary = dir.join(format!("{FILE_NAME}.tmp"));
    let fail = |error: std::io::Error| format!("cannot write {}: {error}", path.display());
    let mut file = File::create(&temporary).map_err(fail)?;
    file.write_all(identity.render(incarnation).as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    fs::rename(&temporary, &path).map_err(fail)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
    Ok(incarnation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            cluster_id: 7,
            node_id: 2,
            cores: 4,
            groups: 64,
        }
    }

    #[test]
    fn recorded_once_then_checked() {
        let dir = std::env::temp_dir().join(format!("cohort-identity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), None);
        let incarnation = check_or_record(&dir, identity()).unwrap();
        assert_ne!(incarnation, 0);
        assert_eq!(read(&dir).unwrap(), Some(identity()));
        assert_eq!(check_or_record(&dir, identity()), Ok(incarnation));
        let other = Identity {
            groups: 32,
            ..identity()
        };
        let error = check_or_record(&dir, other).unwrap_err();
        assert!(
            error.contains("--groups 64") && error.contains("--groups 32"),
            "{error}"
        );
        fs::write(dir.join(FILE_NAME), "cohort data dir v1\ncluster_id=x\n").unwrap();
        assert!(read(&dir).unwrap_err().contains("damaged"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_text_round_trips() {
        assert_eq!(
            Identity::parse(&identity().render(42)),
            Ok((identity(), Some(42)))
        );
        assert!(Identity::parse("something else").is_err());
        assert!(Identity::parse(&identity().render(0)).is_err());
        let extra = format!("{}more=1\n", identity().render(42));
        assert!(Identity::parse(&extra).is_err());
    }

    /// A dir made before incarnations gets one at its next start, and keeps it.
    #[test]
    fn a_dir_without_an_incarnation_gets_one() {
        let dir = std::env::temp_dir().join(format!("cohort-identity-old-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let old = "cohort data dir v1\ncluster_id=7\nnode_id=2\ncores=4\ngroups=64\n";
        fs::write(dir.join(FILE_NAME), old).unwrap();
        assert_eq!(Identity::parse(old), Ok((identity(), None)));
        let incarnation = check_or_record(&dir, identity()).unwrap();
        assert_ne!(incarnation, 0);
        assert_eq!(check_or_record(&dir, identity()), Ok(incarnation));
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! The identity of a data dir: which cluster and node it belongs to, the layout its WAL was
//! written with (cores, groups), and the initial voters its cluster was started with.
//! Checked at every start: a node restarted with another `--groups` would map keys to other
//! groups, with another `--cores` would look for groups in the wrong WAL, and with another
//! `--id` would speak with another node's votes.
//!
//! The file is `cohort.id` in the data dir, plain text, one `key=value` per line, written
//! atomically (temporary file, fsync, rename, fsync of the dir) at the first start.
//!
//! Beside it, `cohort.member` (written the same way) says the node was a member of its
//! cluster, and which members it knew then: see [`record_membership`].

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::raft::NodeId;

const FILE_NAME: &str = "cohort.id";
/// Present once the node was a member of its cluster (at the first start of a node that
/// starts one; once a joining node was added to every group), with the members it knew then.
const MEMBER_FILE_NAME: &str = "cohort.member";
const MEMBER_FORMAT: &str = "cohort member v1";
const FORMAT: &str = "cohort data dir v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub node_id: u64,
    pub cores: u16,
    pub groups: u32,
    /// The digest of the initial voters (`--peers`) of the cluster this node started, with their
    /// ports ([`crate::wire::founders_digest_with_ports`]; a dir recorded before they counted has
    /// [`crate::wire::founders_digest`]), recorded at its first start and sent in its handshakes;
    /// 0: not known (a node that joined, a dir recorded before this line was). Not checked against
    /// the flags of a later start: `--peers` may name other members by then.
    pub founders: u64,
}

impl Identity {
    fn render(&self) -> String {
        let mut text = format!(
            "{FORMAT}\ncluster_id={}\nnode_id={}\ncores={}\ngroups={}\n",
            self.cluster_id, self.node_id, self.cores, self.groups
        );
        if self.founders != 0 {
            text.push_str(&format!("founders={}\n", self.founders));
        }
        text
    }

    /// Whether a dir of `self` may run as `other`: all but the founders, which a later
    /// start does not say.
    fn same_node(&self, other: &Identity) -> bool {
        Identity {
            founders: 0,
            ..*self
        } == Identity {
            founders: 0,
            ..*other
        }
    }

    fn parse(text: &str) -> Result<Identity, String> {
        let mut lines = text.lines();
        if lines.next() != Some(FORMAT) {
            return Err(format!("does not start with `{FORMAT}`"));
        }
        let mut value = |key: &str| -> Result<u64, String> {
            let line = lines.next().ok_or_else(|| format!("{key} is missing"))?;
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("`{line}` is not {key}=NUMBER"))
        };
        let cluster_id = value("cluster_id")?;
        let node_id = value("node_id")?;
        let cores = value("cores")?;
        let groups = value("groups")?;
        // Recorded since the founders were: a dir from before has no such line. Lines of
        // keys this build does not know (a later build's) are left alone.
        let mut founders = 0;
        for line in lines {
            if let Some(value) = line.strip_prefix("founders=") {
                founders = value
                    .parse()
                    .map_err(|_| format!("`{line}` is not founders=NUMBER"))?;
            }
        }
        Ok(Identity {
            cluster_id,
            node_id,
            cores: u16::try_from(cores).map_err(|_| "cores out of range".to_string())?,
            groups: u32::try_from(groups).map_err(|_| "groups out of range".to_string())?,
            founders,
        })
    }
}

/// The identity recorded in `dir`, if it has one.
pub fn read(dir: &Path) -> Result<Option<Identity>, String> {
    let path = dir.join(FILE_NAME);
    let damaged = |why: String| format!("{} is damaged: {why}", path.display());
    match crate::durable::read_text(&path) {
        Ok(Some(text)) => Identity::parse(&text).map(Some).map_err(damaged),
        Ok(None) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            Err(damaged(error.to_string()))
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Check `dir` was made for `identity` (its founders aside), or record it there if the dir
/// has none yet. The identity the dir holds (with the founders it recorded).
pub fn check_or_record(dir: &Path, identity: Identity) -> Result<Identity, String> {
    match read(dir)? {
        Some(recorded) if recorded.same_node(&identity) => Ok(recorded),
        Some(recorded) => Err(format!(
            "{} belongs to node {} of cluster {} with --cores {} --groups {}; this node was \
             started as node {} of cluster {} with --cores {} --groups {} (the layout of a data \
             dir cannot change: start with the recorded flags; on an empty dir a node is a new \
             one, which its cluster's members refuse under an id they knew: it needs a new --id \
             and --join)",
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
        None if holds_core_data(dir) => Err(format!(
            "{} holds a node's logs (core-N/*.wal) but no {FILE_NAME}: without it the node's \
             cluster, id and layout are unknown, and starting with other flags would misread \
             its logs. Put back the file (`{FORMAT}` then cluster_id=, node_id=, cores=, \
             groups= lines, as its first start recorded them, and founders= if it had one), \
             or replace the node: `cohort members remove --id N` it at a member, and start a \
             new node with a new --id on an empty dir with --join",
            dir.display()
        )),
        None => record(dir, identity).map(|()| identity),
    }
}

/// Whether `dir` may hold a core's log: WAL segments (`*.wal`) in a `core-N` folder (made
/// after the identity is), or a folder that cannot be read (it may).
fn holds_core_data(dir: &Path) -> bool {
    let entries = |dir: &Path| -> Option<Vec<std::path::PathBuf>> {
        let listed = fs::read_dir(dir).ok()?;
        listed.map(|e| e.ok().map(|e| e.path())).collect()
    };
    let is_core = |path: &&std::path::PathBuf| {
        path.is_dir()
            && path
                .file_name()
                .and_then(|n| n.to_str()?.strip_prefix("core-"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let Some(top) = entries(dir) else {
        return dir.exists();
    };
    top.iter().filter(is_core).any(|core| {
        entries(core)
            .is_none_or(|files| (files.iter()).any(|file| file.extension() == Some("wal".as_ref())))
    })
}

/// "cannot write `path`: `error`", and where the disk is full, what to do. A node's first
/// start on a small disk fails at whichever of its first files meets the full disk (found in
/// a test: a demo's node failed writing its incarnation file, another node's first segment
/// having taken the room, and said only "No space left on device"; the WAL's error says
/// what to do, with its segment size).
pub(super) fn cannot_write(path: &Path, error: &std::io::Error) -> String {
    cannot("write", path, error)
}

/// "cannot `what` `path`: `error`", and where the disk is full (of blocks or of inodes),
/// what to do (see [`cannot_write`]): for the files and folders a node makes as it starts.
pub(super) fn cannot(what: &str, path: &Path, error: &std::io::Error) -> String {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    let what_to_do = match error.kind() {
        StorageFull | QuotaExceeded => {
            ". A node needs room for its files and for each core's WAL segments \
             (--segment-mib) as it starts: free room (blocks, or inodes: `df -i`), or give a \
             smaller --segment-mib (every node of a cluster should have the same)"
        }
        _ => "",
    };
    format!("cannot {what} {}: {error}{what_to_do}", path.display())
}

fn record(dir: &Path, identity: Identity) -> Result<(), String> {
    let path = dir.join(FILE_NAME);
    crate::durable::replace_file(&path, identity.render().as_bytes())
        .map_err(|error| cannot_write(&path, &error))
}

/// Record that the node of `dir` is a member of its cluster, and the `members` (id, base
/// address) it knows. A node that restarts to join again and finds itself no longer listed
/// was then removed, and does not add itself back; one that restarts while no seed answers
/// dials these members from the cores whose groups hold no configuration yet.
pub fn record_membership(dir: &Path, members: &BTreeMap<NodeId, String>) -> Result<(), String> {
    let path = dir.join(MEMBER_FILE_NAME);
    let listed: Vec<String> = members
        .iter()
        .map(|(id, base)| format!("{id}={base}"))
        .collect();
    let text = format!("{MEMBER_FORMAT}\nmembers={}\n", listed.join(","));
    crate::durable::replace_file(&path, text.as_bytes())
        .map_err(|error| cannot_write(&path, &error))
}

/// The members recorded in `dir` (see [`record_membership`]); None if the node of `dir` was
/// never a member.
pub fn recorded_members(dir: &Path) -> Result<Option<BTreeMap<NodeId, String>>, String> {
    let path = dir.join(MEMBER_FILE_NAME);
    let restore = |why: String| {
        format!(
            "{} is damaged: {why}. It says this node was a member of its cluster: write it \
             again as two lines, `{MEMBER_FORMAT}` and `members=` with the members that \
             `cohort members list` shows, as ID=HOST:PORT,…, and start the node again",
            path.display()
        )
    };
    let text = match crate::durable::read_text(&path) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            return Err(restore(error.to_string()));
        }
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let mut lines = text.lines();
    let members = (lines.next() == Some(MEMBER_FORMAT))
        .then(|| lines.next()?.strip_prefix("members="))
        .flatten()
        .ok_or_else(|| restore(format!("not `{MEMBER_FORMAT}`")))?;
    let members = super::config::parse_members(members).map_err(|e| restore(e.to_string()))?;
    // Checked as `--peers` is: a node that dials these (to join again, or with no seed
    // answering) must not find out only then.
    for (id, address) in &members {
        crate::proto::members::check_address(address)
            .map_err(|why| restore(format!("member {id}: {why}")))?;
    }
    Ok(Some(members))
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
            founders: 0,
        }
    }

    #[test]
    fn recorded_once_then_checked() {
        let dir = std::env::temp_dir().join(format!("cohort-identity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), None);
        check_or_record(&dir, identity()).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(identity()));
        check_or_record(&dir, identity()).unwrap();
        let other = Identity {
            groups: 32,
            ..identity()
        };
        let error = check_or_record(&dir, other).unwrap_err();
        assert!(
            error.contains("--groups 64") && error.contains("--groups 32"),
            "{error}"
        );
        assert_eq!(recorded_members(&dir), Ok(None));
        let members = BTreeMap::from([
            (NodeId(1), "10.0.0.1:7000".to_string()),
            (NodeId(2), "[::1]:7000".to_string()),
        ]);
        record_membership(&dir, &members).unwrap();
        assert_eq!(recorded_members(&dir), Ok(Some(members)));
        fs::write(dir.join(MEMBER_FILE_NAME), "cohort member v1\nmembers=x\n").unwrap();
        assert!(recorded_members(&dir).unwrap_err().contains("damaged"));
        fs::write(
            dir.join(MEMBER_FILE_NAME),
            "cohort member v1\nmembers=1=x\n",
        )
        .unwrap();
        let error = recorded_members(&dir).unwrap_err();
        assert!(error.contains("member 1: address `x`"), "{error}");
        fs::write(dir.join(FILE_NAME), "cohort data dir v1\ncluster_id=x\n").unwrap();
        assert!(read(&dir).unwrap_err().contains("damaged"));
        // Bytes that are not text are damage too, said as such (not "invalid UTF-8").
        fs::write(dir.join(MEMBER_FILE_NAME), b"\xff").unwrap();
        assert!(recorded_members(&dir).unwrap_err().contains("is damaged"));
        fs::write(dir.join(FILE_NAME), b"\xff").unwrap();
        assert!(read(&dir).unwrap_err().contains("is damaged"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_text_round_trips() {
        assert_eq!(Identity::parse(&identity().render()), Ok(identity()));
        let founded = Identity {
            founders: 0x1234,
            ..identity()
        };
        assert_eq!(Identity::parse(&founded.render()), Ok(founded));
        assert!(Identity::parse("something else").is_err());
        let garbled = format!("{}founders=x\n", identity().render());
        assert!(Identity::parse(&garbled).is_err());
        let later_build = format!("{}founders=5\nsomething_new=1\n", identity().render());
        assert_eq!(Identity::parse(&later_build).map(|i| i.founders), Ok(5));
    }

    /// A later start checks all but the founders (its `--peers` may name other members by
    /// then), and runs with those the dir recorded at its first start (a group bootstrapped
    /// later must start from the same: see `run_core`).
    #[test]
    fn the_founders_are_recorded_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("cohort-founders-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let first = Identity {
            founders: 11,
            ..identity()
        };
        assert_eq!(check_or_record(&dir, first), Ok(first));
        let later = Identity {
            founders: 22,
            ..identity()
        };
        assert_eq!(check_or_record(&dir, later), Ok(first));
        let other_node = Identity {
            node_id: 3,
            ..first
        };
        assert!(check_or_record(&dir, other_node).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Found in review: a dir whose identity file was lost, and that holds a node's logs,
    /// took whatever flags came next as its identity.
    #[test]
    fn a_dir_with_logs_but_no_identity_is_refused() {
        let dir = std::env::temp_dir().join(format!("cohort-no-id-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("core-0")).unwrap();
        // A core folder without a log (a first start that stopped early) is no node's data.
        fs::write(dir.join("core-0").join("incarnation"), "x").unwrap();
        check_or_record(&dir, identity()).expect("no log yet");
        fs::remove_file(dir.join(FILE_NAME)).unwrap();
        fs::write(dir.join("core-0").join("00000000000000000001.wal"), "x").unwrap();
        let refused = check_or_record(&dir, identity()).unwrap_err();
        assert!(refused.contains("no cohort.id"), "{refused}");
        assert_eq!(read(&dir), Ok(None), "nothing recorded");
        fs::remove_dir_all(&dir).unwrap();
    }
}

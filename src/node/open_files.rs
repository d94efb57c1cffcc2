//! The files a node may hold open, and what it fits within them: each core's WAL (its soft
//! limit held lower, its segments capped), its peers' connections, and its clients.

use super::clients::CLIENT_CONNECTIONS_MAX;
use super::config::NodeConfig;

/// File descriptors one core may hold for all but its clients, with segments of
/// `segment_bytes` kept up to `wal_soft_limit_bytes` (0: no limit, counted as 1 GiB) and
/// `members` members: two per WAL segment (its file and its handle for the ring), counting
/// the active one, the one prepared ahead and two more past the soft limit; a connection each
/// way per member and the peers' handshakes pending; and 32 for the listeners, io_uring and
/// its event descriptors, and snapshot files being written.
fn files_kept_per_core(segment_bytes: u64, wal_soft_limit_bytes: u64, members: usize) -> u64 {
    let wal_bytes = match wal_soft_limit_bytes {
        0 => 1 << 30,
        bytes => bytes,
    };
    let segments = wal_bytes.div_ceil(segment_bytes.max(1)) + 4;
    let peers = 2 * members as u64 + crate::transport::HANDSHAKES_PENDING_MAX as u64;
    2 * segments + peers + 32
}

/// The least live WAL segments a core must have room for (beside the next one prepared):
/// held to it, its soft limit is one segment, its groups snapshot early once a second is
/// live, and writes are held back at the fourth.
const WAL_SEGMENTS_LEAST: u64 = 4;

/// What one core keeps open besides its WAL segments and its clients (see
/// [`files_kept_per_core`]): a connection each way per member, the peers' handshakes
/// pending, and the listeners, rings, event descriptors and snapshot files.
fn files_besides_segments(members: usize) -> u64 {
    files_kept_per_core(1, 1, members) - 2 * 5
}

/// The WAL soft limit, in bytes, that lets each of `cores` cores keep its log, its peers and
/// 16 clients within `open_files` files (see [`files_kept_per_core`]): `Ok(None)` where
/// `wal_soft_limit_bytes` fits already (0, no limit, never does), `Ok(Some(bytes))` where
/// it must be lower, an error where a core cannot hold even [`WAL_SEGMENTS_LEAST`] live
/// segments beside the rest. Found by an operator: under a limit of 64 files a node warned
/// and ran, until a sync could not open its next segment's O_DIRECT handle; the node
/// stopped with its WAL poisoned, and so would each node of the same limit at about the
/// same size.
fn wal_limit_for_files(
    open_files: u64,
    cores: u16,
    segment_bytes: u64,
    wal_soft_limit_bytes: u64,
    members: usize,
) -> Result<Option<u64>, String> {
    let (segment_bytes, cores) = (segment_bytes.max(1), u64::from(cores.max(1)));
    let per_core = open_files / cores;
    let room = per_core.saturating_sub(files_besides_segments(members));
    // Live segments, two files each, beside the next one prepared, and `clients` clients.
    let live_max = |clients: u64| (room.saturating_sub(clients) / 2).saturating_sub(1);
    if live_max(16) < WAL_SEGMENTS_LEAST {
        let others = files_besides_segments(members) + 16;
        let least = cores * (others + 2 * (WAL_SEGMENTS_LEAST + 1));
        return Err(format!(
            "this process may open {open_files} files, and {cores} core(s) need at least \
             {least} (each its peers' connections and handshakes, its listeners and rings, \
             16 clients and {WAL_SEGMENTS_LEAST} WAL segments and the next, two files each): \
             raise the limit (`ulimit -n`, the hard one with `ulimit -Hn`, or LimitNOFILE= in \
             the unit), or use fewer --cores"
        ));
    }
    // Held lower, the WAL leaves clients half the room (up to the most a core serves), not
    // only the least (found in review: a soft limit of 0 left each core 16 clients however
    // many files). `files_kept_per_core` keeps three live segments past the soft limit.
    let clients = (room / 2).clamp(16, CLIENT_CONNECTIONS_MAX as u64);
    let fits = (live_max(clients).max(WAL_SEGMENTS_LEAST) - 3) * segment_bytes;
    Ok((wal_soft_limit_bytes == 0 || wal_soft_limit_bytes > fits).then_some(fits))
}

/// Live segments one core's WAL may hold at once, beside the next one prepared, where the
/// process may open `open_files` files and each of `cores` cores serves `clients_max`
/// clients: what the rest leaves, two files a segment.
fn wal_segments_max(open_files: u64, cores: u16, members: usize, clients_max: usize) -> u64 {
    let per_core = open_files / u64::from(cores.max(1));
    let others = files_besides_segments(members) + clients_max as u64;
    (per_core.saturating_sub(others) / 2).saturating_sub(1)
}

/// Client connections each of `cores` cores serves at once where the process may open
/// `open_files` files and each core keeps `kept_per_core` of them for its log and peers
/// ([`files_kept_per_core`]): [`CLIENT_CONNECTIONS_MAX`], or what the limit leaves, shared
/// by the cores (at least 16). Found in review: under a soft limit of 1,024, a thousand idle
/// clients took every descriptor, below the cap, and the WAL could not open its next
/// segment: the core refused writes as if its disk were full.
pub(super) fn connections_max(open_files: u64, cores: u16, kept_per_core: u64) -> usize {
    let cores = u64::from(cores.max(1));
    let per_core = open_files.saturating_sub(kept_per_core * cores) / cores;
    usize::try_from(per_core).map_or(CLIENT_CONNECTIONS_MAX, |n| {
        n.clamp(16, CLIENT_CONNECTIONS_MAX)
    })
}
/// Raises this process's open-files limit to the hard one and fits `config` within it: the
/// WAL's soft limit held lower and its segments capped where the files are few (see
/// [`wal_limit_for_files`]), said once; an error where a core cannot run within it.
/// Returns how many client connections each core may serve.
pub(super) fn fit_to_open_files(config: &mut NodeConfig) -> Result<usize, String> {
    let open_files = crate::sys::raise_open_files_limit();
    // The soft limit asked for, where the open-files limit holds it lower.
    let mut soft_limit_asked = None;
    if let Ok(open_files) = open_files {
        let held = wal_limit_for_files(
            open_files,
            config.cores,
            config.segment_bytes,
            config.wal_soft_limit_bytes,
            config.members.len(),
        )?;
        if let Some(held) = held {
            soft_limit_asked = Some(std::mem::replace(&mut config.wal_soft_limit_bytes, held));
        }
    }
    let kept_per_core = files_kept_per_core(
        config.segment_bytes,
        config.wal_soft_limit_bytes,
        config.members.len(),
    );
    let clients_max = match open_files {
        Ok(open_files) => {
            let clients_max = connections_max(open_files, config.cores, kept_per_core);
            config.wal_segments_max =
                wal_segments_max(open_files, config.cores, config.members.len(), clients_max);
            // No limit (0) held to a terabyte of segments is not worth a warning: only below
            // what a core counts for it otherwise (1 GiB).
            let worth_saying = soft_limit_asked
                .filter(|&asked| asked != 0 || config.wal_soft_limit_bytes < 1 << 30);
            if let Some(asked) = worth_saying {
                let asked = match asked {
                    0 => "no limit".to_string(),
                    bytes => format!("{} MiB", bytes >> 20),
                };
                tracing::warn!(
                    "this process may open {open_files} files: each core's WAL is held to {} \
                     MiB (--wal-soft-limit-mib: {asked}), past which its groups snapshot early, \
                     and to {} segments of two files each, at which it takes no writes it can \
                     hold back until one is freed, so that it leaves its peers and clients \
                     theirs: raise the limit (`ulimit -n`, the hard one with `ulimit -Hn`, or \
                     LimitNOFILE= in the unit), or use larger segments (--segment-mib)",
                    config.wal_soft_limit_bytes >> 20,
                    config.wal_segments_max
                );
            }
            clients_max
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the open files limit");
            CLIENT_CONNECTIONS_MAX
        }
    };
    if clients_max < CLIENT_CONNECTIONS_MAX {
        tracing::warn!(
            "this process may open few files: each core serves at most {clients_max} clients \
             at once (raise the hard limit, `ulimit -Hn`, or LimitNOFILE= in the unit)"
        );
    }
    Ok(clients_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found by an operator): a node whose open-files limit cannot hold its WAL up to
    /// its soft limit beside its peers and clients holds the WAL lower, and caps its segments
    /// where files run out; one that cannot hold even a few segments is refused at start.
    #[test]
    fn the_wal_is_held_within_the_files_the_process_may_open() {
        // The defaults fit in 1,024 files on one core; 8 cores of 128 files each are held to
        // one segment's soft limit; 16 of 64 cannot run.
        let fits = |files, cores| wal_limit_for_files(files, cores, 64 << 20, 1 << 30, 3);
        assert_eq!(fits(1024, 1), Ok(None));
        assert_eq!(fits(1024, 8), Ok(Some(64 << 20)));
        let error = fits(1024, 16).unwrap_err();
        assert!(
            error.contains("may open 1024 files") && error.contains("ulimit"),
            "{error}"
        );
        // 1 MiB segments up to 1 GiB under 200 files: held to half of what 200 files leave
        // beside the peers (102), the other half for clients.
        let held = wal_limit_for_files(200, 1, 1 << 20, 1 << 30, 1).unwrap();
        let held = held.expect("held lower");
        let kept = files_kept_per_core(1 << 20, held, 1);
        assert!(kept + 51 <= 200 && kept + 51 + 4 > 200, "{held} {kept}");
        // No soft limit (0) is held too, where files are few.
        assert_eq!(
            wal_limit_for_files(200, 1, 1 << 20, 0, 1).unwrap(),
            Some(held)
        );
        // The cap: segments and clients together within the limit, the prepared one too.
        let shapes = [
            (200, 1, 1),
            (1024, 1, 3),
            (1024, 8, 3),
            (4096, 4, 5),
            (1 << 20, 16, 3),
        ];
        for ((files, cores, members), asked) in
            shapes.into_iter().flat_map(|s| [(s, 1 << 30), (s, 0)])
        {
            let held = wal_limit_for_files(files, cores, 1 << 20, asked, members).unwrap();
            let soft = held.unwrap_or(asked);
            let kept = files_kept_per_core(1 << 20, soft, members);
            let clients = connections_max(files, cores, kept);
            let max = wal_segments_max(files, cores, members, clients);
            let others = files_besides_segments(members);
            let per_core = files / u64::from(cores);
            assert!(
                others + clients as u64 + 2 * (max + 1) <= per_core,
                "{files} {cores} {members}: {max} segments, {clients} clients"
            );
            // Room for groups to snapshot early (past the soft limit) before the cap.
            let soft_segments = soft / (1 << 20);
            assert!(
                max >= soft_segments + 3,
                "{files} {cores}: {max} for {soft_segments}"
            );
            assert!(max >= WAL_SEGMENTS_LEAST);
            // A WAL held lower leaves clients half the room, up to the most a core serves
            // (found in review: no soft limit, 0, left 16 however many files).
            let room = per_core - others;
            let share = (room / 2).clamp(16, CLIENT_CONNECTIONS_MAX as u64) as usize;
            assert!(
                held.is_none() || clients >= share,
                "{files} {cores} {asked}: {clients} clients"
            );
        }
    }

    /// Goal (found in review): the clients a core serves at once leave the process the files
    /// its WAL, snapshots and peers need, under a small open files limit as under a large
    /// one.
    #[test]
    fn the_clients_served_leave_the_files_the_node_needs() {
        // The defaults (64 MiB segments up to 1 GiB, three members): 142 per core.
        let kept = files_kept_per_core(64 << 20, 1 << 30, 3);
        assert_eq!(kept, 2 * (16 + 4) + 6 + 64 + 32);
        assert_eq!(connections_max(1 << 20, 16, kept), CLIENT_CONNECTIONS_MAX);
        for (open_files, cores) in [(1024, 1), (1024, 2), (4096, 4), (65_536, 16)] {
            let clients = connections_max(open_files, cores, kept) as u64;
            let all_kept = u64::from(cores) * kept;
            assert!(
                clients * u64::from(cores) + all_kept <= open_files,
                "{open_files} {cores}"
            );
            assert!(clients >= 16);
        }
        assert_eq!(connections_max(1024, 1, kept), 1024 - 142);
        assert_eq!(connections_max(0, 0, kept), 16);
        // 1 MiB segments up to 1 GiB: over 2,000 files for the log alone (found in review:
        // a fixed 128 left a thousand clients room to take the log's).
        let small_segments = files_kept_per_core(1 << 20, 1 << 30, 3);
        assert!(small_segments >= 2 * 1024, "{small_segments}");
        assert_eq!(
            connections_max(1 << 20, 1, small_segments),
            CLIENT_CONNECTIONS_MAX
        );
        assert_eq!(
            connections_max(4096, 1, small_segments),
            4096 - small_segments as usize
        );
    }
}

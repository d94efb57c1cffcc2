//! What a core says of itself to its peers in every Raft batch it sends.

/// Said by a core in each of its Raft batches, to the same core of every peer. Each is false
/// when absent, as from a node of a build before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderSays {
    /// Its log can no longer grow (a full disk, a stuck sync, a stop): it takes no new entries
    /// and will not lead, so its peers hand it no group and do not count on it to store
    /// writes.
    pub log_full: bool,
    /// Its key-value state holds its quota: its peers' leaders take no writes that may add
    /// data.
    pub kv_full: bool,
    /// Its clients reach it only through other members, which forward their requests to it:
    /// it hands the groups it leads over, and its peers hand it none.
    pub clients_relay: bool,
}

//! Whether a core's clients reach it only through other members, and what it says of that
//! (see [`crate::shard::client_reach`]); the balancer then hands its groups to those members.

use crate::raft::{NodeId, Role};
use crate::shard::client_reach::ReachChange;

use super::{Core, CoreLog, CoreNet};

impl<L: CoreLog, N: CoreNet> Core<L, N> {
    /// `from`, a member of `group` (checked), forwarded a client's read to it: counted where
    /// this node leads the group, which answers it.
    pub(super) fn note_relayed(&mut self, group: u32, from: NodeId) {
        if (self.groups.get(&group)).is_some_and(|g| g.replica.role() == Role::Leader) {
            self.reach.relayed_by(from.0);
        }
    }

    /// At each look at the leaders, before the balancer's, where leaders are balanced (with
    /// `--no-leader-balance` they stay where elections put them): what the requests since the
    /// last look say of how clients reach this core, said to the peers and in the log when it
    /// changes.
    pub(super) fn watch_client_reach(&mut self) {
        let leads = (self.groups.values()).any(|g| g.replica.role() == Role::Leader);
        let core = self.shape.core;
        match self.reach.look(self.ticks, leads) {
            ReachChange::None => return,
            ReachChange::Relay { members, for_ticks } => {
                let seconds = (self.shape.tick_length)
                    .map(|tick| tick.as_secs_f64() * for_ticks as f64)
                    .unwrap_or_default();
                tracing::warn!(
                    core,
                    through = ?members,
                    ticks = for_ticks,
                    seconds = %format_args!("{seconds:.1}"),
                    "clients reach this core only through other members, which forward their \
                     requests (is its client port cut off from them?): it hands the groups it \
                     leads to the other members (spread by how many each leads, those it \
                     names first among equals), and its peers hand it none for this long"
                );
            }
            ReachChange::Direct => tracing::info!(
                core,
                "a client reached this core directly again: its peers may hand it groups"
            ),
            ReachChange::Expired => tracing::info!(
                core,
                "this core said long enough that its clients relay: its peers may hand it \
                 groups again (if its clients still relay, it finds so again)"
            ),
        }
        let relay = self.reach.says_relay();
        self.say(|says| says.clients_relay = relay);
    }
}

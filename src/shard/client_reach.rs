//! Whether a core's clients reach it only through other members. A leader its clients cannot
//! reach, while its peers can, is served through its followers (`Group::forward_write`): one
//! hop more for every request, and the followers' work besides. Once only forwarded requests
//! come for a while, the core hands the groups it leads to the members that forward them, and
//! says so to its peers, whose balancers then hand it none (`balance::pick_evacuations`).
//!
//! Counted at the core, not per group: a client takes a (node, core) for cut off, not a group
//! (`client::cut_off`). A read or write a client sent the core itself shows that clients reach
//! it, and ends the saying at the next look. Status requests, transfers and membership changes
//! do not count: they come from operators and monitoring, often from hosts other than the
//! clients' (review 305).
//!
//! Where one client host alone is cut off from a node, and no other client sends that core
//! requests, the core hands its groups over all the same, and again each time they are handed
//! back while that lasts (every 34 to 128 looks).
//!
//! Peers of a build before this ignore the saying: their balancers hand such a core groups,
//! and it hands them over again, as often as their back-off lets them (a target that lost a
//! group within the probation waits at least that long).

use std::collections::BTreeSet;

use super::balance::{HANDOVER_BACKOFF_LOOKS_MAX, HANDOVER_PROBATION_LOOKS};

/// Looks at the leaders (`CoreShape::balance_every_ticks` apart: 0.41 s with a node's
/// defaults) that found requests forwarded to this core's groups, with no client request since
/// the last that did, before the core says its clients relay. Looks that find nothing at all
/// (an idle client) neither count nor reset. Four, at least three looks' time (1.2 s) after
/// the first relayed request: a client probes a leader it took for cut off four election
/// timeouts (0.8 s by default) after it took it so, and goes back to it once the probe
/// answers, so that a cut healed within that time ends before the core hands anything over.
/// (A cut healed later may not: the client's next probe comes twice as long after, and so on,
/// up to fifty election timeouts.)
pub const RELAYED_LOOKS: u32 = 4;

/// Looks the core says its clients relay for, at first: the balancers' probation and two (14 s
/// with a node's defaults). It then says nothing, the balancers may hand it groups again, and
/// where its clients still relay it finds so again and says it twice as long, up to
/// [`HANDOVER_BACKOFF_LOOKS_MAX`] looks. Each look that finds a client request while the core
/// leads a group halves the next saying's start (it never goes below this). Longer than the probation: the core's own
/// judgement of its handovers counts one whose target led the group for the probation,
/// from the look after, as done; a group handed back to it before that, as failed, and it
/// would back off from that target, often the member its clients relay through (review 305).
pub const RELAY_SAID_LOOKS_MIN: u64 = HANDOVER_PROBATION_LOOKS + 2;

/// What a look found changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReachChange {
    /// Nothing to say.
    None,
    /// The clients relay, through these members: say so for this many ticks.
    Relay { members: Vec<u64>, for_ticks: u64 },
    /// A client reached the core directly while it said they relay.
    Direct,
    /// The core said so for as long as it would.
    Expired,
}

/// The count of a core's requests by how they came, and whether it says its clients relay.
#[derive(Debug)]
pub struct ClientReach {
    look_ticks: u64,
    /// Requests clients sent this core since the last look.
    direct: u64,
    /// Requests members forwarded to this core's groups it leads, since the last look.
    relayed: u64,
    /// The members that forwarded, since the last look that found a client request or the end
    /// of the last saying.
    relays: BTreeSet<u64>,
    /// Looks that found forwarded requests and no client request, since the last that found
    /// one.
    looks_relayed: u32,
    /// While the core says its clients relay: until this tick.
    said_until: Option<u64>,
    /// How long it said so last, in ticks (0: never, or started over).
    said_ticks: u64,
}

impl ClientReach {
    /// Looks come `look_ticks` apart.
    pub fn new(look_ticks: u64) -> ClientReach {
        ClientReach {
            look_ticks: look_ticks.max(1),
            direct: 0,
            relayed: 0,
            relays: BTreeSet::new(),
            looks_relayed: 0,
            said_until: None,
            said_ticks: 0,
        }
    }

    /// Clients sent the core `requests` reads and writes.
    pub fn heard_directly(&mut self, requests: usize) {
        self.direct += requests as u64;
    }

    /// `member` forwarded a client's write or read to a group this core leads.
    pub fn relayed_by(&mut self, member: u64) {
        self.relayed += 1;
        self.relays.insert(member);
    }

    /// Whether the core says its clients relay.
    pub fn says_relay(&self) -> bool {
        self.said_until.is_some()
    }

    /// While the core says its clients relay: the members they relay through. Empty
    /// otherwise.
    pub fn relaying_through(&self) -> Vec<u64> {
        match self.said_until {
            Some(_) => self.relays.iter().copied().collect(),
            None => Vec::new(),
        }
    }

    /// Whether `member` forwarded requests to this core since a client last reached it.
    pub fn relays_through(&self, member: u64) -> bool {
        self.relays.contains(&member)
    }

    /// A look at tick `now`; `leads`: whether the core leads a group.
    pub fn look(&mut self, now: u64, leads: bool) -> ReachChange {
        let (direct, relayed) = (
            std::mem::take(&mut self.direct),
            std::mem::take(&mut self.relayed),
        );
        if direct > 0 {
            self.looks_relayed = 0;
            self.relays.clear();
            // Each look that finds the core leading and reached halves the next saying's start:
            // one stray request (a client whose cut is partial) does not start it over at the
            // shortest (review 307).
            if leads {
                self.said_ticks /= 2;
            }
            return match self.said_until.take() {
                Some(_) => ReachChange::Direct,
                None => ReachChange::None,
            };
        }
        if let Some(until) = self.said_until {
            if now < until {
                return ReachChange::None;
            }
            self.said_until = None;
            self.looks_relayed = 0;
            self.relays.clear();
            return ReachChange::Expired;
        }
        if relayed == 0 {
            return ReachChange::None;
        }
        self.looks_relayed += 1;
        if self.looks_relayed < RELAYED_LOOKS {
            return ReachChange::None;
        }
        let least = self.look_ticks * RELAY_SAID_LOOKS_MIN;
        let most = self.look_ticks * HANDOVER_BACKOFF_LOOKS_MAX;
        self.said_ticks = (self.said_ticks * 2).clamp(least, most);
        self.said_until = Some(now + self.said_ticks);
        ReachChange::Relay {
            members: self.relays.iter().copied().collect(),
            for_ticks: self.said_ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOK: u64 = 41;

    /// Looks at `LOOK`-tick steps from `*now`, each after `relays` forwarded requests (from
    /// member 2) and `direct` client ones; the changes found.
    fn looks(
        reach: &mut ClientReach,
        now: &mut u64,
        n: u32,
        (relays, direct): (u32, usize),
    ) -> Vec<ReachChange> {
        (0..n)
            .map(|_| {
                for _ in 0..relays {
                    reach.relayed_by(2);
                }
                reach.heard_directly(direct);
                *now += LOOK;
                reach.look(*now, true)
            })
            .filter(|change| *change != ReachChange::None)
            .collect()
    }

    fn relay(for_looks: u64) -> ReachChange {
        ReachChange::Relay {
            members: vec![2],
            for_ticks: for_looks * LOOK,
        }
    }

    #[test]
    fn only_forwarded_requests_for_four_looks_say_the_clients_relay() {
        let (mut reach, mut now) = (ClientReach::new(LOOK), 0);
        assert!(looks(&mut reach, &mut now, 3, (5, 0)).is_empty());
        // Idle looks neither count nor reset.
        assert!(looks(&mut reach, &mut now, 4, (0, 0)).is_empty());
        assert_eq!(looks(&mut reach, &mut now, 1, (5, 0)), [relay(34)]);
        assert!(reach.says_relay() && reach.relays_through(2) && !reach.relays_through(3));
        // Said for 34 looks, relayed or not.
        assert!(looks(&mut reach, &mut now, 17, (5, 0)).is_empty());
        assert!(looks(&mut reach, &mut now, 16, (0, 0)).is_empty());
        assert_eq!(
            looks(&mut reach, &mut now, 1, (0, 0)),
            [ReachChange::Expired]
        );
        assert!(!reach.says_relay());
    }

    #[test]
    fn a_client_request_resets_the_count_and_ends_the_saying() {
        let (mut reach, mut now) = (ClientReach::new(LOOK), 0);
        // A single client request among the forwarded ones: clients reach the core.
        for _ in 0..10 {
            assert!(looks(&mut reach, &mut now, 3, (5, 0)).is_empty());
            assert!(looks(&mut reach, &mut now, 1, (5, 1)).is_empty());
        }
        assert_eq!(looks(&mut reach, &mut now, 4, (5, 0)), [relay(34)]);
        assert_eq!(
            looks(&mut reach, &mut now, 1, (0, 1)),
            [ReachChange::Direct]
        );
        assert!(!reach.says_relay() && !reach.relays_through(2));
    }

    #[test]
    fn each_saying_after_another_lasts_twice_as_long_until_clients_reach_a_leader() {
        let (mut reach, mut now) = (ClientReach::new(LOOK), 0);
        let mut said = Vec::new();
        while said.len() < 4 {
            let changes = looks(&mut reach, &mut now, 1, (5, 0));
            said.extend(changes.into_iter().filter(|c| *c != ReachChange::Expired));
            assert!(now < 1_000 * LOOK, "said {said:?}");
        }
        assert_eq!(
            said,
            [relay(34), relay(68), relay(128), relay(128)],
            "doubling up to the longest wait"
        );
        // Heard directly while leading nothing: the saying ends, the doubling stays.
        reach.heard_directly(1);
        now += LOOK;
        assert_eq!(reach.look(now, false), ReachChange::Direct);
        assert_eq!(looks(&mut reach, &mut now, 4, (5, 0)), [relay(128)]);
        // Heard directly once while leading: the next saying starts at half the last doubled.
        assert_eq!(
            looks(&mut reach, &mut now, 1, (0, 1)),
            [ReachChange::Direct]
        );
        assert_eq!(looks(&mut reach, &mut now, 4, (5, 0)), [relay(128)]);
        // Three times: at the shortest.
        assert_eq!(
            looks(&mut reach, &mut now, 1, (0, 1)),
            [ReachChange::Direct]
        );
        assert_eq!(looks(&mut reach, &mut now, 2, (0, 1)), []);
        assert_eq!(looks(&mut reach, &mut now, 4, (5, 0)), [relay(34)]);
    }
}

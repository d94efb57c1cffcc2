//! The cores of leaders that this client cannot reach while the other members hear them (a
//! firewall rule or a route between the client and that node only): their groups' requests
//! go through another member (a relay), which forwards them, until a probe finds the leader
//! reachable again. No I/O here: `Client` sends the probes and picks the relays.

use std::time::{Duration, Instant};

use foldhash::HashMap;

use super::silence;

/// A node and one of its cores: a cut may take one port of a node and leave the others
/// (found by a tester: an answer of another core ended the cut-off, and the next dial of the
/// cut port waited out its patience).
pub(super) type Place = (u64, u16);

#[derive(Clone, Copy, Debug)]
struct CutOff {
    /// When a probe is due.
    until: Instant,
    /// How long the wait before `until` was: doubled each time a probe finds the node
    /// still cut off.
    window: Duration,
    /// The member that said it hears the node lead, or the last relay that answered.
    via: Option<u64>,
    /// Which marking this is: a probe's result counts only for the marking it was sent in.
    generation: u64,
    /// A probe of this marking is under way.
    probing: bool,
}

/// The cut-off places of one client.
#[derive(Default)]
pub(super) struct CutOffs {
    entries: HashMap<Place, CutOff>,
    generations: u64,
}

/// What routing a request to a cut-off place finds.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Detour {
    /// The relay named for it, if any.
    pub via: Option<u64>,
    /// A probe is due: send it, and hand its result to [`CutOffs::probed`] with this
    /// generation.
    pub probe: Option<u64>,
}

impl CutOffs {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, place: Place) -> bool {
        self.entries.contains_key(&place)
    }

    /// `place` leads while this client cannot reach it: a probe is due after four election
    /// timeouts (`allowed`); marked again while marked, the wait and the relay named stay
    /// (`via`, where given, replaces the relay).
    pub fn mark(&mut self, place: Place, via: Option<u64>, now: Instant, allowed: Duration) {
        let window = match self.entries.get(&place) {
            Some(cut) => cut.window,
            None => silence::given_up_for(allowed),
        };
        self.set(place, via, window, now);
    }

    fn set(&mut self, place: Place, via: Option<u64>, window: Duration, now: Instant) {
        self.generations += 1;
        let via = via.or_else(|| self.entries.get(&place).and_then(|cut| cut.via));
        let cut = CutOff {
            until: now + window,
            window,
            via,
            generation: self.generations,
            probing: false,
        };
        self.entries.insert(place, cut);
    }

    /// A request for `place` is routed: None if it is not cut off; else its relay, and a
    /// probe if one is due (one at a time).
    pub fn detour(&mut self, place: Place, now: Instant) -> Option<Detour> {
        let cut = self.entries.get_mut(&place)?;
        let due = !cut.probing && now >= cut.until;
        cut.probing |= due;
        let probe = due.then_some(cut.generation);
        Some(Detour {
            via: cut.via,
            probe,
        })
    }

    /// The probe of `place` sent in marking `generation` ended: `reached`, the place is no
    /// longer cut off; else the next probe waits twice as long, up to fifty election
    /// timeouts (`allowed`). Nothing where the place was marked again since, or heard from.
    pub fn probed(
        &mut self,
        place: Place,
        generation: u64,
        reached: bool,
        now: Instant,
        allowed: Duration,
    ) {
        let Some(cut) = self
            .entries
            .get(&place)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        match reached {
            true => _ = self.entries.remove(&place),
            false => {
                let window = silence::next_window(cut.window, allowed);
                self.set(place, None, window, now);
            }
        }
    }

    /// `place` answered this client: it is not cut off.
    pub fn heard_from(&mut self, place: Place) {
        self.entries.remove(&place);
    }

    /// `relay` answered a request relayed round `place`: the next ones go through it too.
    pub fn relay_answered(&mut self, place: Place, relay: u64) {
        if let Some(cut) = self.entries.get_mut(&place) {
            cut.via = Some(relay);
        }
    }

    /// `relay` failed: no place names it any more.
    pub fn relay_failed(&mut self, relay: u64) {
        for cut in self.entries.values_mut() {
            cut.via = cut.via.filter(|&via| via != relay);
        }
    }

    /// Only members stay cut off, or named as relays.
    pub fn retain_members(&mut self, member: impl Fn(u64) -> bool) {
        self.entries.retain(|&(node, _), _| member(node));
        for cut in self.entries.values_mut() {
            cut.via = cut.via.filter(|&via| member(via));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWED: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Goal (review 304): probes come after four election timeouts, then twice as long each
    /// time one finds the place still cut off (a probe takes longer than the first wait: the
    /// wait restarted at four each time), and one at a time. Method: a place marked, routed
    /// before and after its waits, its probes failed.
    #[test]
    fn probes_come_at_doubling_waits_one_at_a_time() {
        let mut cuts = CutOffs::default();
        let t0 = crate::clock::now();
        let place = (3, 0);
        cuts.mark(place, Some(2), t0, ALLOWED);
        let no_probe = Detour {
            via: Some(2),
            probe: None,
        };
        assert_eq!(cuts.detour(place, t0 + ms(799)), Some(no_probe));
        let first = cuts
            .detour(place, t0 + ms(800))
            .unwrap()
            .probe
            .expect("due");
        assert_eq!(
            cuts.detour(place, t0 + ms(900)).unwrap().probe,
            None,
            "one at a time"
        );
        // It took 1.5 s and failed: the next in 1.6 s.
        let t1 = t0 + ms(2_300);
        cuts.probed(place, first, false, t1, ALLOWED);
        assert_eq!(cuts.detour(place, t1 + ms(1_599)).unwrap().probe, None);
        let second = cuts
            .detour(place, t1 + ms(1_600))
            .unwrap()
            .probe
            .expect("due");
        assert_ne!(first, second);
        cuts.probed(place, second, true, t1 + ms(1_700), ALLOWED);
        assert!(!cuts.contains(place));
        assert_eq!(cuts.detour(place, t1 + ms(1_700)), None);
    }

    /// Goal (review 304): a probe's result counts only for the marking it was sent in: one
    /// that found the place reachable does not end a cut-off found since, nor does a failed
    /// one double its wait. Method: a probe sent, the place marked again, the probe's result.
    #[test]
    fn a_probe_s_result_counts_only_for_its_marking() {
        let mut cuts = CutOffs::default();
        let t0 = crate::clock::now();
        let place = (3, 1);
        cuts.mark(place, None, t0, ALLOWED);
        let probe = cuts
            .detour(place, t0 + ms(800))
            .unwrap()
            .probe
            .expect("due");
        cuts.mark(place, Some(1), t0 + ms(900), ALLOWED);
        cuts.probed(place, probe, true, t0 + ms(1_000), ALLOWED);
        assert!(cuts.contains(place), "a stale probe ended a fresh cut-off");
        // The fresh marking's wait is still four election timeouts.
        let due = cuts.detour(place, t0 + ms(1_700)).unwrap();
        assert_eq!(
            due,
            Detour {
                via: Some(1),
                probe: Some(due.probe.unwrap())
            }
        );
    }

    /// Goal: relays are kept while they answer and dropped when they fail or leave the
    /// cluster; places of nodes that leave are forgotten; a cut of one core leaves the
    /// node's others alone.
    #[test]
    fn relays_and_places_follow_answers_failures_and_members() {
        let mut cuts = CutOffs::default();
        let t0 = crate::clock::now();
        cuts.mark((3, 0), None, t0, ALLOWED);
        cuts.mark((4, 0), Some(2), t0, ALLOWED);
        assert!(!cuts.contains((3, 1)));
        cuts.relay_answered((3, 0), 2);
        assert_eq!(cuts.detour((3, 0), t0).unwrap().via, Some(2));
        cuts.relay_failed(2);
        assert_eq!(cuts.detour((3, 0), t0).unwrap().via, None);
        assert_eq!(cuts.detour((4, 0), t0).unwrap().via, None);
        cuts.relay_answered((4, 0), 1);
        cuts.retain_members(|node| node != 1 && node != 3);
        assert!(!cuts.contains((3, 0)));
        assert_eq!(cuts.detour((4, 0), t0).unwrap().via, None);
        cuts.heard_from((4, 0));
        assert!(cuts.is_empty());
    }
}

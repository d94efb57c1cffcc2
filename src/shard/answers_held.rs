//! What a core's client connections hold of the answers the core handed them and they have
//! not written yet (in their outbox, and in the batch their writer is writing), weighed as
//! `proto::client::answer_weight`: per connection, and for the whole core.
//!
//! A client that keeps asking and leaves its answers unread is cut off once its connection
//! holds too much. Bounded per connection only, 4,096 connections of a core that read
//! nothing could hold 64 MiB each: so once the core's connections together would hold too
//! much, those that hold the most are cut off, the one answered then counted with the answers
//! it is about to take (a client that reads what it asked holds little, a turn's answers, but
//! may hold some while its writer writes; one whose turn's answers alone outweigh what every
//! other holds is the one cut off, unless no other holds any: a lone connection's turn is
//! answered whatever it weighs). A connection cut off holds nothing from then on, in these
//! counts: its answers go with it as soon as its task sees it cut off.

use std::cell::Cell;
use std::rc::Rc;

/// The answer weight one connection may hold: 65,536 answers, or about 64 MiB of them
/// (`proto::client::ANSWER_WEIGHT_BYTES` each).
pub const ANSWER_WEIGHT_HELD_MAX: usize = 65_536;

/// The answer weight the connections of one core may hold together: about 256 MiB.
pub const ANSWER_WEIGHT_CORE_HELD_MAX: usize = 4 * ANSWER_WEIGHT_HELD_MAX;

/// The weight held by all the connections of one core.
#[derive(Clone, Debug, Default)]
pub struct CoreAnswersHeld(Rc<Cell<usize>>);

impl CoreAnswersHeld {
    pub fn get(&self) -> usize {
        self.0.get()
    }
}

/// The weight one connection holds, and its core's.
#[derive(Clone, Debug, Default)]
pub struct AnswersHeld {
    connection: Rc<Cell<usize>>,
    /// Cut off: it holds nothing, and what it releases was released already.
    cut: Rc<Cell<bool>>,
    core: CoreAnswersHeld,
}

impl AnswersHeld {
    /// A new connection's, on the core whose weight is `core`.
    pub fn of_connection(core: &CoreAnswersHeld) -> AnswersHeld {
        AnswersHeld {
            connection: Rc::default(),
            cut: Rc::default(),
            core: core.clone(),
        }
    }

    /// Whether answers of `weight` may be handed over as far as this connection goes:
    /// within its bound, or to a connection that holds none (so a client that reads is
    /// always answered).
    pub fn takes(&self, weight: usize) -> bool {
        let held = self.connection.get();
        held == 0 || held.saturating_add(weight) <= ANSWER_WEIGHT_HELD_MAX
    }

    /// How much the core's connections must let go of for answers of `weight` to be handed
    /// over within the core's bound: 0 if none.
    pub fn core_excess(&self, weight: usize) -> usize {
        (self.core.get().saturating_add(weight)).saturating_sub(ANSWER_WEIGHT_CORE_HELD_MAX)
    }

    /// What the core's other connections hold.
    pub fn others_hold(&self) -> usize {
        self.core.get().saturating_sub(self.connection.get())
    }

    /// Answers of `weight` were handed over.
    pub fn charge(&self, weight: usize) {
        self.connection.set(self.connection.get() + weight);
        self.core.0.set(self.core.get() + weight);
    }

    /// Answers of `weight` were written, or let go of.
    pub fn release(&self, weight: usize) {
        if !self.cut.get() {
            self.connection.set(self.connection.get() - weight);
            self.core.0.set(self.core.get() - weight);
        }
    }

    /// The connection is cut off: what it holds no longer counts (its task lets go of it
    /// at once), and its later releases are of nothing.
    pub fn cut_off(&self) {
        if !self.cut.replace(true) {
            self.core
                .0
                .set(self.core.get() - self.connection.replace(0));
        }
    }

    /// Whether the connection was cut off.
    pub fn is_cut(&self) -> bool {
        self.cut.get()
    }

    /// What the connection holds.
    pub fn get(&self) -> usize {
        self.connection.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_takes_within_its_bound_and_one_cut_off_counts_for_nothing() {
        let core = CoreAnswersHeld::default();
        let (one, two) = (
            AnswersHeld::of_connection(&core),
            AnswersHeld::of_connection(&core),
        );
        assert!(one.takes(ANSWER_WEIGHT_HELD_MAX + 1), "holding nothing");
        one.charge(ANSWER_WEIGHT_HELD_MAX);
        assert!(!one.takes(1), "its own bound");
        two.charge(3 * ANSWER_WEIGHT_HELD_MAX);
        assert_eq!(core.get(), ANSWER_WEIGHT_CORE_HELD_MAX);
        assert_eq!((one.core_excess(0), one.core_excess(5)), (0, 5));
        two.release(1);
        assert_eq!(one.core_excess(1), 0);
        two.cut_off();
        assert_eq!((two.get(), core.get()), (0, ANSWER_WEIGHT_HELD_MAX));
        // What its writer and outbox let go of later was taken out already.
        two.release(7);
        assert_eq!(core.get(), ANSWER_WEIGHT_HELD_MAX);
        one.release(ANSWER_WEIGHT_HELD_MAX);
        assert_eq!(core.get(), 0);
    }
}

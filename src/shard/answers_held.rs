//! What a core's client connections hold of the answers the core handed them and they have
//! not written yet (in their outbox, and in the batch their writer is writing), weighed as
//! `proto::client::answer_weight`: per connection, and for the whole core.
//!
//! A client that keeps asking and leaves its answers unread is cut off once its connection
//! holds too much, or once the core's connections together do and it holds some: a client
//! that reads what it asked holds little (a turn's answers, written at once). Bounded per
//! connection only, 4,096 connections of a core that read nothing could hold 64 MiB each.

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
    core: CoreAnswersHeld,
}

impl AnswersHeld {
    /// A new connection's, on the core whose weight is `core`.
    pub fn of_connection(core: &CoreAnswersHeld) -> AnswersHeld {
        AnswersHeld {
            connection: Rc::default(),
            core: core.clone(),
        }
    }

    /// Whether answers of `weight` may be handed over: within both bounds, or to a
    /// connection that holds none (so a client that reads is always answered).
    pub fn takes(&self, weight: usize) -> bool {
        let held = self.connection.get();
        held == 0
            || (held.saturating_add(weight) <= ANSWER_WEIGHT_HELD_MAX
                && self.core.get().saturating_add(weight) <= ANSWER_WEIGHT_CORE_HELD_MAX)
    }

    /// Answers of `weight` were handed over.
    pub fn charge(&self, weight: usize) {
        self.connection.set(self.connection.get() + weight);
        self.core.0.set(self.core.get() + weight);
    }

    /// Answers of `weight` were written, or let go of.
    pub fn release(&self, weight: usize) {
        self.connection.set(self.connection.get() - weight);
        self.core.0.set(self.core.get() - weight);
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
    fn a_connection_holding_nothing_takes_anything_and_one_holding_some_takes_within_bounds() {
        let core = CoreAnswersHeld::default();
        let (one, two) = (
            AnswersHeld::of_connection(&core),
            AnswersHeld::of_connection(&core),
        );
        assert!(
            one.takes(ANSWER_WEIGHT_CORE_HELD_MAX + 1),
            "holding nothing"
        );
        one.charge(ANSWER_WEIGHT_HELD_MAX);
        assert!(!one.takes(1), "its own bound");
        two.charge(1);
        let others = AnswersHeld::of_connection(&core);
        others.charge(ANSWER_WEIGHT_CORE_HELD_MAX - ANSWER_WEIGHT_HELD_MAX - 1);
        assert_eq!(core.get(), ANSWER_WEIGHT_CORE_HELD_MAX);
        assert!(!two.takes(1), "the core's bound");
        others.release(1);
        assert!(two.takes(1) && !two.takes(2));
        one.release(ANSWER_WEIGHT_HELD_MAX);
        assert!(
            one.takes(ANSWER_WEIGHT_CORE_HELD_MAX + 1),
            "holding nothing again"
        );
        assert_eq!((one.get(), two.get()), (0, 1));
        let left = ANSWER_WEIGHT_CORE_HELD_MAX - ANSWER_WEIGHT_HELD_MAX - 1;
        assert_eq!(core.get(), left);
    }
}

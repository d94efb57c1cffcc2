//! Recovery's decision table: what to do where the scan of a segment stops.
//!
//! The scan reads records while each one verifies and carries the next log sequence number.
//! Where it stops, five facts decide, and exactly one row of [`STOP_TABLE`] matches every
//! combination of them (tested exhaustively below).

/// What recovery knows at the offset where a segment's scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopFacts {
    /// The next segment's first record verifies and carries the expected lsn: this segment
    /// simply ended (its rest is slack that a record did not fit in).
    pub next_segment_continues: bool,
    /// A record that verifies lies after the stop in this same segment.
    pub valid_record_later_in_segment: bool,
    /// A record that verifies lies after the stop, in this segment or a later one.
    pub valid_record_later: bool,
    /// One of those records says the expected lsn was already durable when it was written
    /// (its `durable_lsn` is above the expected lsn): the bytes at the stop were synced.
    pub later_record_proves_durable: bool,
    /// The bytes at the stop are zero (a clean end) rather than garbage (a torn write).
    pub stop_is_zero: bool,
}

/// What recovery does at a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopAction {
    /// Go on with the next segment.
    SegmentEnd,
    /// The log ends here cleanly: append from here.
    EndOfLog,
    /// The last, unsynced write was torn: drop everything from the stop on (all of it
    /// unsynced, so never acknowledged) and append from here.
    TruncateTornTail,
    /// Synced records are damaged or missing: refuse to open, name the file and offset.
    Refuse,
    /// The facts contradict each other; a bug in how recovery computed them.
    Impossible,
}

/// One row: `None` matches either value of a fact.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub next_segment_continues: Option<bool>,
    pub valid_record_later_in_segment: Option<bool>,
    pub valid_record_later: Option<bool>,
    pub later_record_proves_durable: Option<bool>,
    pub stop_is_zero: Option<bool>,
    pub action: StopAction,
    pub why: &'static str,
}

const fn row(facts: [Option<bool>; 5], action: StopAction, why: &'static str) -> Row {
    Row {
        next_segment_continues: facts[0],
        valid_record_later_in_segment: facts[1],
        valid_record_later: facts[2],
        later_record_proves_durable: facts[3],
        stop_is_zero: facts[4],
        action,
        why,
    }
}

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);
const X: Option<bool> = None;

/// Columns: next_segment_continues, valid_record_later_in_segment, valid_record_later,
/// later_record_proves_durable, stop_is_zero.
pub static STOP_TABLE: [Row; 9] = [
    row(
        [X, T, F, X, X],
        StopAction::Impossible,
        "a record later in the segment is a later record",
    ),
    row(
        [X, F, F, T, X],
        StopAction::Impossible,
        "a durability proof needs a later record",
    ),
    row(
        [T, F, T, X, X],
        StopAction::SegmentEnd,
        "the log goes on in the next segment",
    ),
    row(
        [T, F, F, F, X],
        StopAction::Impossible,
        "a next segment that continues has a record",
    ),
    row(
        [T, T, T, X, X],
        StopAction::Refuse,
        "the log forks: records after the stop and a next segment",
    ),
    row(
        [F, X, T, T, X],
        StopAction::Refuse,
        "a synced record is damaged: later records prove it was durable",
    ),
    row(
        [F, X, T, F, X],
        StopAction::TruncateTornTail,
        "records after a torn one, none proving it durable: unsynced batches",
    ),
    row(
        [F, F, F, F, T],
        StopAction::EndOfLog,
        "zeros and nothing after them",
    ),
    row(
        [F, F, F, F, F],
        StopAction::TruncateTornTail,
        "garbage and nothing valid after it",
    ),
];

impl Row {
    pub fn matches(&self, facts: &StopFacts) -> bool {
        let fits = |want: Option<bool>, have: bool| want.is_none_or(|w| w == have);
        fits(self.next_segment_continues, facts.next_segment_continues)
            && fits(
                self.valid_record_later_in_segment,
                facts.valid_record_later_in_segment,
            )
            && fits(self.valid_record_later, facts.valid_record_later)
            && fits(
                self.later_record_proves_durable,
                facts.later_record_proves_durable,
            )
            && fits(self.stop_is_zero, facts.stop_is_zero)
    }
}

/// The row for `facts`. Panics if none or several match (the exhaustive test rules it out).
pub fn decide(facts: &StopFacts) -> &'static Row {
    let mut matching = STOP_TABLE.iter().filter(|row| row.matches(facts));
    let row = matching
        .next()
        .unwrap_or_else(|| panic!("no recovery row for {facts:?}"));
    assert!(
        matching.next().is_none(),
        "several recovery rows for {facts:?}"
    );
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_facts() -> impl Iterator<Item = StopFacts> {
        (0u32..32).map(|bits| StopFacts {
            next_segment_continues: bits & 1 != 0,
            valid_record_later_in_segment: bits & 2 != 0,
            valid_record_later: bits & 4 != 0,
            later_record_proves_durable: bits & 8 != 0,
            stop_is_zero: bits & 16 != 0,
        })
    }

    #[test]
    fn every_combination_of_facts_matches_exactly_one_row() {
        // Goal: the table is complete and unambiguous. Method: all 2^5 combinations.
        for facts in all_facts() {
            let count = STOP_TABLE.iter().filter(|row| row.matches(&facts)).count();
            assert_eq!(count, 1, "{facts:?} matches {count} rows");
        }
    }

    #[test]
    fn every_row_is_reachable() {
        // Goal: no dead row hides a mistake. Method: each row is chosen by some combination.
        for (i, row) in STOP_TABLE.iter().enumerate() {
            assert!(
                all_facts().any(|facts| std::ptr::eq(decide(&facts), row)),
                "row {i} ({}) is never chosen",
                row.why
            );
        }
    }

    #[test]
    fn a_proof_of_durability_always_refuses_unless_the_log_continues() {
        // Goal: the one rule that protects acknowledged data, stated independently.
        for facts in all_facts() {
            let action = decide(&facts).action;
            if facts.later_record_proves_durable && !facts.next_segment_continues {
                assert!(
                    matches!(action, StopAction::Refuse | StopAction::Impossible),
                    "{facts:?} -> {action:?}"
                );
            }
        }
    }
}

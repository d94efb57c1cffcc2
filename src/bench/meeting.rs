//! Where the threads of the load generator meet before the load: the last to arrive starts
//! the clock and makes the one recorder of all; any thread's failure, a thread that ends
//! before it arrives (its [`Seat`] dropped), or Ctrl-C ends the meeting for every thread.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::driver::interrupted;
use super::recorder::Recorder;

/// Where the generator threads meet once connected, so that they all start their load at
/// once and record it into one [`Recorder`].
pub struct Meeting {
    threads: u32,
    state: Mutex<Met>,
    changed: Condvar,
}

#[derive(Default)]
struct Met {
    arrived: u32,
    /// The first error of any thread's set-up: every thread then ends with it.
    failure: Option<String>,
    /// The load's start, set by the last thread to arrive, and the recorder of all.
    clock: Option<(Instant, Arc<Mutex<Recorder>>)>,
}

impl Meeting {
    pub fn new(threads: u32) -> Meeting {
        Meeting {
            threads,
            state: Mutex::new(Met::default()),
            changed: Condvar::new(),
        }
    }

    /// The load's start and the recorder, once the meeting is over and its threads gone.
    pub fn into_clock(self) -> Option<(Instant, Arc<Mutex<Recorder>>)> {
        self.state.into_inner().ok()?.clock
    }

    fn state(&self) -> MutexGuard<'_, Met> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the meeting with `error` (the first one stands) for every thread.
    pub fn fail(&self, error: String) {
        self.state().failure.get_or_insert(error);
        self.changed.notify_all();
    }

    /// The failure that ended the meeting, if one did.
    pub fn failure(&self) -> Option<String> {
        self.state().failure.clone()
    }

    /// Waits for every thread; returns the load's start and the recorder, or the first
    /// failure of any thread (an interruption too).
    fn meet(
        &self,
        warmup: Duration,
        duration: Duration,
    ) -> Result<(Instant, Arc<Mutex<Recorder>>), String> {
        let mut state = self.state();
        state.arrived += 1;
        if state.arrived == self.threads && state.failure.is_none() {
            let start = crate::clock::now();
            let measured = start + warmup;
            let recorder = Recorder::new(measured, measured + duration);
            state.clock = Some((start, Arc::new(Mutex::new(recorder))));
            self.changed.notify_all();
        }
        // Blocks this executor's thread, whose tasks have nothing to do until the start.
        loop {
            if let Some(error) = &state.failure {
                return Err(error.clone());
            }
            if let Some((start, recorder)) = &state.clock {
                return Ok((*start, Arc::clone(recorder)));
            }
            if interrupted() {
                return Err("interrupted before the load began".to_string());
            }
            let waited = self.changed.wait_timeout(state, Duration::from_millis(100));
            state = waited.unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// What a thread that ended before the meeting leaves there.
pub const ENDED_EARLY: &str = "a generator thread ended before the load began";

/// A thread's place at the [`Meeting`]: dropped before it met (its executor never ran the
/// thread's work, or the work panicked), it ends the meeting for every other thread.
pub struct Seat {
    meeting: Arc<Meeting>,
    met: bool,
}

impl Seat {
    pub fn new(meeting: Arc<Meeting>) -> Seat {
        Seat {
            meeting,
            met: false,
        }
    }

    pub fn meeting(&self) -> &Meeting {
        &self.meeting
    }

    /// Takes the seat: waits for every thread (see [`Meeting`]).
    pub fn meet(
        &mut self,
        warmup: Duration,
        duration: Duration,
    ) -> Result<(Instant, Arc<Mutex<Recorder>>), String> {
        self.met = true;
        self.meeting.meet(warmup, duration)
    }

    pub fn fail(&self, error: String) {
        self.meeting.fail(error);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if !self.met {
            self.meeting.fail(ENDED_EARLY.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn meeting(threads: u32) -> Arc<Meeting> {
        Arc::new(Meeting::new(threads))
    }

    /// Every thread starts at the same instant and records into the same recorder, set
    /// when the last one arrived.
    #[test]
    fn the_threads_leave_the_meeting_with_one_clock_and_one_recorder() {
        let meeting = meeting(3);
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let meeting = Arc::clone(&meeting);
                std::thread::spawn(move || meeting.meet(Duration::ZERO, SECOND).expect("met"))
            })
            .collect();
        let (start, recorder) = meeting.meet(Duration::ZERO, SECOND).expect("met");
        for thread in waiting {
            let (other_start, other_recorder) = thread.join().unwrap();
            assert_eq!(other_start, start);
            assert!(Arc::ptr_eq(&other_recorder, &recorder));
        }
    }

    /// A thread whose set-up failed, or one that never started, ends the meeting for the
    /// others with its error, instead of leaving them waiting for ever.
    #[test]
    fn a_failure_ends_the_meeting_for_every_thread() {
        let meeting = meeting(3);
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let meeting = Arc::clone(&meeting);
                std::thread::spawn(move || meeting.meet(Duration::ZERO, SECOND).map(|_| ()))
            })
            .collect();
        meeting.fail("cannot start an executor".to_string());
        meeting.fail("a later error".to_string());
        for thread in waiting {
            assert_eq!(
                thread.join().unwrap(),
                Err("cannot start an executor".to_string())
            );
        }
        assert!(
            meeting.meet(Duration::ZERO, SECOND).is_err(),
            "a late thread learns it too"
        );
    }

    /// A thread that ends before it met (its executor never ran its work, or the work
    /// panicked) ends the meeting: the others do not wait for it for ever.
    #[test]
    fn a_seat_left_before_the_meeting_ends_it_for_the_others() {
        let meeting = meeting(2);
        let (met, waited) = std::sync::mpsc::channel();
        let _waiting = {
            let mut seat = Seat::new(Arc::clone(&meeting));
            std::thread::spawn(move || met.send(seat.meet(Duration::ZERO, SECOND).map(|_| ())))
        };
        let panicked = {
            let seat = Seat::new(Arc::clone(&meeting));
            std::thread::spawn(move || {
                let _seat = seat;
                panic!("a set-up that panics");
            })
        };
        assert!(panicked.join().is_err());
        assert_eq!(
            waited.recv_timeout(Duration::from_secs(10)),
            Ok(Err(
                "a generator thread ended before the load began".to_string()
            )),
            "the thread at the meeting still waits"
        );
    }

    /// An executor that never ran its thread's work drops the seat unused.
    #[test]
    fn a_seat_dropped_unused_ends_the_meeting() {
        let meeting = meeting(2);
        drop(Seat::new(Arc::clone(&meeting)));
        assert_eq!(meeting.failure(), Some(ENDED_EARLY.to_string()));
    }
}

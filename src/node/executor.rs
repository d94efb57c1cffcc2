//! Starting glommio executors: one per core for a node, one for a client command.

use std::future::Future;

use std::rc::Rc;

use glommio::sync::Semaphore;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement, PoolPlacement};

/// Threads of each executor's blocking pool, unbound (a core pinned with `--pin` shares no
/// CPU with its own jobs). Snapshot jobs (encoding a state, writing or storing its file: seconds
/// for a big one) take a [`Lane`] one at a time; the other thread is left to the jobs that must
/// not wait behind them: the WAL's next segment (without it every group's entries wait once
/// the segment in use runs short) and freeing memory. Found in review: one thread took jobs in
/// turn.
const BLOCKING_THREADS: usize = 2;

/// A builder of an executor named `name` on `placement`, with its blocking pool.
pub(crate) fn executor_builder(placement: Placement, name: &str) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement)
        .name(name)
        .blocking_thread_pool_placement(PoolPlacement::Unbound(BLOCKING_THREADS))
}

/// Run the future `make()` builds to completion on a fresh executor thread (unpinned) and
/// return its output. The future itself may hold thread-local state (`Rc`); `make` moves.
pub fn on_one_executor<G, F, T>(name: &str, make: G) -> Result<T, String>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    start_executor(name, make)?
        .join()
        .map_err(|e| format!("the executor thread failed: {e}"))
}

/// As [`on_one_executor`], but returns once the thread started: join its handle for the
/// output.
pub fn start_executor<G, F, T>(name: &str, make: G) -> Result<ExecutorJoinHandle<T>, String>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    crate::sys::raise_memlock_limit().map_err(|e| e.to_string())?;
    executor_builder(Placement::Unbound, name)
        .io_memory(1 << 20)
        .spawn(make)
        .map_err(|e| format!("cannot start an executor: {e}"))
}

/// Runs `job` on the executor's blocking thread and returns its output. A panic in `job`
/// comes back as a panic of the caller's task, which stops its core and so the node: left
/// on the blocking thread it would end that thread, the only one the core has, and every
/// later job (the WAL's next segment, snapshot files) would wait for ever.
pub async fn off_loop<R, F>(job: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let caught = std::panic::AssertUnwindSafe(job);
    #[allow(clippy::disallowed_methods)] // the one door to the blocking thread
    let outcome = glommio::executor()
        .spawn_blocking(move || std::panic::catch_unwind(caught))
        .await;
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Jobs off the loop that run one at a time (see [`BLOCKING_THREADS`]); mostly in the order
/// they came, not strictly (a job started while a waiter is being woken may go first).
#[derive(Clone)]
pub(crate) struct Lane(Rc<Semaphore>);

impl Lane {
    pub(crate) fn new() -> Lane {
        Lane(Rc::new(Semaphore::new(1)))
    }

    /// Runs `job` as [`off_loop`] does, once the lane's jobs before it ended.
    pub(crate) async fn off_loop<R, F>(&self, job: F) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let _turn = (self.0.acquire_permit(1).await).expect("a lane is never closed");
        off_loop(job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_off_the_loop_returns_its_output() {
        assert_eq!(on_one_executor("off-loop-test", || off_loop(|| 7)), Ok(7));
    }

    #[test]
    fn a_panic_off_the_loop_ends_the_executor_rather_than_its_wait() {
        let ended = on_one_executor("off-loop-test", || async {
            glommio::spawn_local(off_loop(|| panic!("a bug in a job")))
                .detach()
                .await;
        });
        assert!(
            ended.is_err(),
            "the panic should end the executor: {ended:?}"
        );
    }
}

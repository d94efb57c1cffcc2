//! Starting glommio executors: one per core for a node, one for a client command.

use std::future::Future;

use glommio::{LocalExecutorBuilder, Placement};

/// Run the future `make()` builds to completion on a fresh executor thread (unpinned) and
/// return its output. The future itself may hold thread-local state (`Rc`); `make` moves.
pub fn on_one_executor<G, F, T>(name: &str, make: G) -> Result<T, String>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    crate::sys::raise_memlock_limit().map_err(|e| e.to_string())?;
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(1 << 20)
        .spawn(make)
        .map_err(|e| format!("cannot start an executor: {e}"))?
        .join()
        .map_err(|e| format!("the executor thread failed: {e}"))
}

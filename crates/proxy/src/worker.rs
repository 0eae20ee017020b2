//! Thread-per-core data plane. Each worker thread runs its own
//! single-threaded runtime, accepts on its own `SO_REUSEPORT` socket and
//! talks to upstreams over its own connection pools, so a request is served
//! start to finish on one thread with no cross-thread wake-ups — the way
//! nginx's worker processes work, but sharing one route table.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The current thread's worker index, if it is a data-plane worker.
pub(crate) fn current() -> Option<usize> {
    let w = WORKER.with(Cell::get);
    (w != usize::MAX).then_some(w)
}

pub(crate) fn enter(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// How many workers to run when the configuration says 0: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

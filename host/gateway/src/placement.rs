//! Where an application's plugin calls run: inline on the async worker that received the
//! request, or handed off the worker with `tokio::task::block_in_place`.
//!
//! Inline is the fast path. Handing the worker over costs ~3–4 context switches per request
//! and grows the runtime's thread pool (perf, BENCHMARKS.md, HTTP row). It is sound because
//! no plugin call ever waits on tokio or on anything else: WASI calls that could block trap
//! at once (`sandbox/wasi_io.rs`), and every call is bounded by the app's epoch deadline.
//!
//! But an inline call holds its worker for as long as it runs, and on a small gateway there
//! are as many workers as cores. So an application leaves the fast path for good, off the
//! workers, the first time one of its decisions fails a plugin (timeout, trap, memory), or
//! once [`SLOW_CALLS_TOLERATED`] of its decisions took longer than [`INLINE_BUDGET`]: a
//! hostile or slow application can then cost other applications only a few such calls
//! (SER-001, SER-024), and well-behaved applications keep the fast path.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The longest a decision may take, in wall-clock time, and still count as quick.
///
/// A warm decision takes a few microseconds and a fresh-instance one a few tens, so this is
/// far beyond either. It is wall-clock time (a thread's CPU clock costs a system call per
/// read), so a quick call that the OS preempted can exceed it on a loaded machine; hence
/// [`SLOW_CALLS_TOLERATED`] rather than demotion at the first slow call.
pub const INLINE_BUDGET: Duration = Duration::from_millis(5);

/// How many slow calls an application may make inline before it is moved off the workers.
/// Each costs the connections sharing that worker at most the app's deadline.
pub const SLOW_CALLS_TOLERATED: u32 = 3;

/// One application's placement. Starts inline.
#[derive(Debug, Default)]
pub struct Placement {
    off_worker: AtomicBool,
    slow_calls: AtomicU32,
}

impl Placement {
    /// Runs `work` (which calls plugins) where this application's calls belong, and moves
    /// the application off the workers once enough calls took longer than [`INLINE_BUDGET`].
    pub fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        if self.off_worker.load(Ordering::Relaxed) {
            return off_worker(work);
        }
        let started = Instant::now();
        let output = work();
        if started.elapsed() > INLINE_BUDGET
            && self.slow_calls.fetch_add(1, Ordering::Relaxed) + 1 >= SLOW_CALLS_TOLERATED
        {
            self.demote();
        }
        output
    }

    /// Sends this application's later calls off the workers (a plugin failed).
    pub fn demote(&self) {
        if !self.off_worker.swap(true, Ordering::Relaxed) {
            tracing::debug!("application's plugin calls now run off the async workers");
        }
    }

    /// Whether this application's calls run off the workers.
    pub fn is_off_worker(&self) -> bool {
        self.off_worker.load(Ordering::Relaxed)
    }
}

/// `block_in_place` where there is a multi-threaded runtime to hand the worker to; a plain
/// call elsewhere (tests and tools without a runtime, or a current-thread one, where
/// `block_in_place` would panic).
fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_calls_move_the_app_off_the_workers_for_good() {
        let placement = Placement::default();
        assert_eq!(placement.run(|| 1), 1);
        assert!(!placement.is_off_worker(), "a quick call stays inline");
        for _ in 1..SLOW_CALLS_TOLERATED {
            placement.run(|| std::thread::sleep(INLINE_BUDGET * 2));
            placement.run(|| ());
        }
        assert!(
            !placement.is_off_worker(),
            "a few slow calls (a preempted thread) are tolerated"
        );
        placement.run(|| std::thread::sleep(INLINE_BUDGET * 2));
        assert!(placement.is_off_worker());
        placement.run(|| ());
        assert!(
            placement.is_off_worker(),
            "quick calls do not bring it back"
        );
    }

    #[test]
    fn a_failure_moves_the_app_off_the_workers() {
        let placement = Placement::default();
        placement.demote();
        assert!(placement.is_off_worker());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn off_worker_calls_run_in_block_in_place_on_a_runtime() {
        let placement = Placement::default();
        placement.demote();
        // block_in_place panics on a current-thread runtime; here it must run the work.
        assert_eq!(placement.run(|| 7), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn off_worker_calls_fall_back_to_inline_on_a_current_thread_runtime() {
        let placement = Placement::default();
        placement.demote();
        assert_eq!(placement.run(|| 7), 7);
    }
}

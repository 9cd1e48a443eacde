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
//! once [`SLOW_CALLS_TOLERATED`] of its decisions used more than [`INLINE_BUDGET`] of CPU
//! time: a hostile or slow application can then cost other applications only a few such
//! calls (SER-001, SER-024), and well-behaved applications keep the fast path.
//!
//! Slow means CPU time, not wall-clock time: on a busy machine the OS preempts a quick call
//! for longer than the budget now and then, and a wall-clock rule moved well-behaved apps
//! off the workers for good under load (it halved `/v1/decide` throughput in the gateway
//! benchmark when it happened). Reading a thread's CPU clock is a system call (~0.6 µs
//! here, against ~25 ns for the wall clock), so an app is timed by the wall clock until its
//! first call over the budget, and by its thread's CPU clock from then on. An attacker thus
//! gets at most one uncounted slow call before [`SLOW_CALLS_TOLERATED`] counted ones.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The most CPU time a decision may use and still count as quick.
///
/// A warm decision takes a few microseconds and a fresh-instance one a few tens, so this is
/// far beyond either.
pub const INLINE_BUDGET: Duration = Duration::from_millis(5);

/// How many calls over [`INLINE_BUDGET`] of CPU time an application may make inline before
/// it is moved off the workers. Each costs the connections sharing that worker at most the
/// app's deadline.
pub const SLOW_CALLS_TOLERATED: u32 = 3;

/// One application's placement. Starts inline, timed by the wall clock.
#[derive(Debug, Default)]
pub struct Placement {
    off_worker: AtomicBool,
    /// Set by the first call over the budget in wall-clock time: from then on each call is
    /// timed by its thread's CPU clock, which tells a slow plugin from a preempted thread.
    cpu_timed: AtomicBool,
    slow_calls: AtomicU32,
}

impl Placement {
    /// Runs `work` (which calls plugins) where this application's calls belong, and moves
    /// the application off the workers once enough calls used more than [`INLINE_BUDGET`]
    /// of CPU time.
    pub fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        if self.off_worker.load(Ordering::Relaxed) {
            return off_worker(work);
        }
        if self.cpu_timed.load(Ordering::Relaxed) {
            // `work` never yields (see the module documentation), so this thread's CPU
            // clock measures exactly the call.
            let (cpu_started, wall_started) = (thread_cpu_time(), Instant::now());
            let output = work();
            let used = match (cpu_started, thread_cpu_time()) {
                (Some(started), Some(ended)) => ended.saturating_sub(started),
                // Without the CPU clock, wall-clock time: a preempted call may then count
                // as slow, which moves a well-behaved app, never keeps a slow one inline.
                _ => wall_started.elapsed(),
            };
            if used > INLINE_BUDGET
                && self.slow_calls.fetch_add(1, Ordering::Relaxed) + 1 >= SLOW_CALLS_TOLERATED
            {
                self.demote();
            }
            return output;
        }
        let started = Instant::now();
        let output = work();
        if started.elapsed() > INLINE_BUDGET && !self.cpu_timed.swap(true, Ordering::Relaxed) {
            tracing::debug!("an application's call took longer than the inline budget: its calls are now timed in CPU time");
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

    /// Whether this application's calls are timed by their thread's CPU clock.
    #[cfg(test)]
    fn is_cpu_timed(&self) -> bool {
        self.cpu_timed.load(Ordering::Relaxed)
    }
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`), if the clock can
/// be read.
fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call writes only to it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (rc == 0).then_some(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
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

    /// Burns this thread's CPU for `cpu` (measured by the same clock the placement reads).
    fn spin_for(cpu: Duration) {
        let cpu_time = || thread_cpu_time().expect("the thread CPU clock");
        let started = cpu_time();
        while cpu_time().saturating_sub(started) < cpu {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn calls_slow_in_cpu_time_move_the_app_off_the_workers_for_good() {
        let placement = Placement::default();
        assert_eq!(placement.run(|| 1), 1);
        assert!(!placement.is_off_worker(), "a quick call stays inline");
        // The first slow call only switches the app to CPU timing (it may have been a
        // preempted thread); then SLOW_CALLS_TOLERATED counted ones move it.
        placement.run(|| spin_for(INLINE_BUDGET * 2));
        assert!(placement.is_cpu_timed() && !placement.is_off_worker());
        for _ in 1..SLOW_CALLS_TOLERATED {
            placement.run(|| spin_for(INLINE_BUDGET * 2));
            placement.run(|| ());
        }
        assert!(!placement.is_off_worker(), "a few slow calls are tolerated");
        placement.run(|| spin_for(INLINE_BUDGET * 2));
        assert!(placement.is_off_worker());
        placement.run(|| ());
        assert!(
            placement.is_off_worker(),
            "quick calls do not bring it back"
        );
    }

    #[test]
    fn a_preempted_quick_call_does_not_move_the_app() {
        // Sleeping stands in for a thread the OS preempted: wall-clock time without CPU.
        let placement = Placement::default();
        for _ in 0..SLOW_CALLS_TOLERATED * 3 {
            placement.run(|| std::thread::sleep(INLINE_BUDGET * 2));
        }
        assert!(
            placement.is_cpu_timed(),
            "the first one switched to CPU timing"
        );
        assert!(
            !placement.is_off_worker(),
            "calls slow only in wall-clock time never move a well-behaved app"
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

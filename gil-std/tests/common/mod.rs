//! Helpers shared by gil-std's thread tests.

use std::thread;
use std::time::{Duration, Instant};

/// Waits until `cond` holds, failing the test after a minute instead of hanging it. Nothing is
/// asserted about how fast the condition comes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < give_up, "gave up waiting for: {what}");
        thread::yield_now();
    }
}

/// This thread's CPU time so far (Linux: the first field of `/proc/thread-self/schedstat`).
#[cfg(target_os = "linux")]
#[allow(dead_code)] // not every test file that shares this module uses it
pub fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let nanos = stat.split_whitespace().next().expect("a field");
    Duration::from_nanos(nanos.parse().expect("nanoseconds"))
}

/// A blocking region of `g`'s that lasts until the thread queued behind it has taken the lock
/// it was offered, and 5 ms more: it earns credit, and this thread comes back to a taken lock.
/// (A region that ended before the waiter claimed would keep its turn and earn nothing.)
#[allow(dead_code)] // not every test file that shares this module uses it
pub fn earn_credit(gil: &gil_std::Gil, g: &mut gil_std::GilGuard<'_>) {
    g.allow_threads(|| {
        wait_until("the waiter took the offer", || !gil.has_waiters());
        thread::sleep(Duration::from_millis(5));
    });
}

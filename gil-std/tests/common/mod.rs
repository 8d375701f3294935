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

/// The two sides of a loan in a test. The holder lends only while the thread that asked stays
/// awake; on a busy machine (the tests run side by side) the holder may not reach a checkpoint
/// in that time, and the thread back from its region then waits in line. So the holder, after
/// each checkpoint, hands such a thread the lock ([`Lending::hand_over_if_queued`]), and that
/// thread blocks and comes back again until it is lent ([`Lending::come_back_on_loan`]).
#[allow(dead_code)] // not every test file that shares this module uses it
#[derive(Default)]
pub struct Lending {
    handed: std::sync::atomic::AtomicBool,
}

#[allow(dead_code)] // not every test file that shares this module uses it
impl Lending {
    /// On the holder, after a checkpoint: if the other thread waits in line, hands it the lock
    /// and waits for it back. Returns `false`, to go on in a `wait_until`.
    pub fn hand_over_if_queued(&self, gil: &gil_std::Gil, h: &mut gil_std::GilGuard<'_>) -> bool {
        if gil.has_waiters() {
            self.handed.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(
                h.hand_over(),
                "the thread back from its region waits in line"
            );
        }
        false
    }

    /// On the thread that holds `g` while the holder waits in line: blocks in a region the
    /// holder takes ([`earn_credit`]) and comes back, until it comes back on a loan.
    pub fn come_back_on_loan(&self, gil: &gil_std::Gil, g: &mut gil_std::GilGuard<'_>) {
        loop {
            earn_credit(gil, g);
            if !self.handed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
    }
}

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

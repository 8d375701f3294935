//! The clock's backstop, alone in a process: no other lock's waiters wake the clock thread
//! here, so it must wake itself at its deadline to ask a holder that makes no checkpoint.
//! One test only: the tests of one file run at once, and would wake it for each other.
#![cfg(not(loom))]

use std::thread;
use std::time::{Duration, Instant};

use gil_std::Gil;

#[test]
fn the_clock_asks_once_and_not_before_an_interval() {
    // The clock asks a holder that makes no checkpoint to drop the lock once somebody has
    // waited a whole interval (a lower bound: a loaded machine only makes it later), and
    // while its request is unanswered it does not ask again.
    let interval = Duration::from_millis(50);
    let gil = Gil::with_switch_interval(interval);
    thread::scope(|s| {
        let mut g = gil.acquire();
        let before_queueing = Instant::now();
        let waiter = s.spawn(|| drop(gil.acquire()));
        let give_up = Instant::now() + Duration::from_secs(60);
        while gil.stats().clock_requests == 0 {
            assert!(Instant::now() < give_up, "the clock never asked");
            thread::sleep(Duration::from_millis(1));
        }
        let asked_after = before_queueing.elapsed();
        assert!(
            asked_after >= interval,
            "the clock asked {asked_after:?} after the waiter queued, before an interval"
        );
        thread::sleep(4 * interval);
        assert_eq!(gil.stats().clock_requests, 1, "asked again, unanswered");
        g.checkpoint().unwrap(); // hands over
        drop(g);
        waiter.join().unwrap();
    });
    assert_eq!(gil.stats().forced_drops, 1);
}

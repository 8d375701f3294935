//! A loan's events, alone in a process. The loan is asked for on the breaker only if the
//! holder's next checkpoint comes within the asker's stay awake (microseconds); with other
//! tests of the same file running at once on a small machine it often does not, and the loan
//! goes through the line instead, where this test cannot tell the two apart.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;

use gil_std::Gil;

mod common;
use common::{Lending, wait_until};

/// A thread back from blocking that borrows the lock reports it as any waiter does: after
/// `BlockingLeft`, `Wants` (its ask), then `Got` (the loan).
#[test]
fn a_loan_is_reported_as_a_wait_and_a_hold() {
    use std::cell::RefCell;

    use gil_std::Event;

    thread_local! {
        static SEEN: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
    }
    // Leaked: a hook may run on the lock's threads until they are done with it.
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(
        Gil::MAX_SWITCH_INTERVAL,
    )));
    gil.set_event_hook(Some(&|_, event| {
        SEEN.with(|s| s.borrow_mut().push(event));
    }));
    let back = AtomicBool::new(false);
    let lending = Lending::default();
    thread::scope(|s| {
        let mut g = gil.acquire();
        let holder = s.spawn(|| {
            let mut h = gil.acquire(); // queued behind `g`
            wait_until("the other thread came back", || {
                h.checkpoint().unwrap(); // lends here
                back.load(SeqCst) || lending.hand_over_if_queued(gil, &mut h)
            });
        });
        wait_until("the holder queued", || gil.has_waiters());
        lending.come_back_on_loan(gil, &mut g);
        back.store(true, SeqCst);
        let seen = SEEN.with(RefCell::take);
        let left = seen
            .iter()
            .rposition(|&e| e == Event::BlockingLeft)
            .expect("the region was reported");
        assert_eq!(seen[left + 1..], [Event::Wants, Event::Got], "{seen:?}");
        drop(g);
        holder.join().unwrap();
    });
    gil.set_event_hook(None);
    assert_eq!(gil.stats().loans, 1);
}

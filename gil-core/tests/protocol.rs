//! The protocol, driven deterministically through the poll API in one OS thread: many logical
//! threads are just many waiter nodes.
#![cfg(not(loom))]

use std::pin::pin;

use gil_core::model::{Cancel, Enqueued, Loan, Steps};
use gil_core::{Breaker, RawGil, SpinPark, TryLockError, WaitPolicy, WaitState, Waiter};

type Node = Waiter<gil_core::SpinPark>;

#[test]
fn uncontended_lock_unlock() {
    let gil: RawGil = RawGil::new();
    assert!(!gil.is_locked());
    gil.lock().unwrap();
    assert!(gil.is_locked());
    assert_eq!(gil.try_lock(), Err(TryLockError::WouldBlock));
    // SAFETY: we own it.
    unsafe { gil.unlock() };
    assert!(!gil.is_locked());
    assert_eq!(gil.try_lock(), Ok(()));
    // SAFETY: we own it.
    unsafe { gil.unlock() };
    assert_eq!(gil.switches(), 0, "no handoff happened");
}

#[test]
fn enqueue_on_a_free_lock_takes_it() {
    let gil: RawGil = RawGil::new();
    let w = pin!(Node::new());
    // SAFETY: w is pinned here and outlives the lock's use of it.
    assert_eq!(unsafe { gil.enqueue(w.as_ref()) }, Enqueued::Acquired);
    assert_eq!(w.state(), WaitState::Idle);
    assert!(gil.is_locked() && !gil.has_waiters());
    // SAFETY: we own it.
    unsafe { gil.unlock() };
}

#[test]
fn handoff_is_fifo_and_nobody_barges() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let (a, b, c) = (pin!(Node::new()), pin!(Node::new()), pin!(Node::new()));
    for w in [a.as_ref(), b.as_ref(), c.as_ref()] {
        // SAFETY: nodes are pinned on this frame and all end granted before it returns.
        assert_eq!(unsafe { gil.enqueue(w) }, Enqueued::Queued);
        assert_eq!(w.state(), WaitState::Waiting);
    }
    assert!(gil.has_waiters());
    for (i, w) in [a.as_ref(), b.as_ref(), c.as_ref()].into_iter().enumerate() {
        // SAFETY: the previous owner (us, then each granted node in turn) releases.
        unsafe { gil.unlock() };
        assert_eq!(w.state(), WaitState::Granted, "waiter {i} is next in line");
        assert!(
            gil.is_locked(),
            "the lock passes directly, never free in between"
        );
        assert_eq!(gil.try_lock(), Err(TryLockError::WouldBlock), "no barging");
        assert_eq!(gil.switches(), i as u32 + 1);
    }
    assert!(!gil.has_waiters());
    // SAFETY: c owns it.
    unsafe { gil.unlock() };
    assert!(!gil.is_locked());
}

#[test]
fn cancel_from_the_middle_keeps_the_order() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let (a, b, c) = (pin!(Node::new()), pin!(Node::new()), pin!(Node::new()));
    // SAFETY: pinned on this frame; every node ends granted or cancelled.
    unsafe {
        for w in [a.as_ref(), b.as_ref(), c.as_ref()] {
            assert_eq!(gil.enqueue(w), Enqueued::Queued);
        }
        assert_eq!(gil.cancel(b.as_ref()), Cancel::Removed);
        assert_eq!(b.state(), WaitState::Idle);
        gil.unlock();
        assert_eq!(a.state(), WaitState::Granted);
        assert_eq!(c.state(), WaitState::Waiting);
        gil.unlock();
        assert_eq!(c.state(), WaitState::Granted);
        gil.unlock();
    }
    assert!(!gil.is_locked());
}

#[test]
fn cancelling_the_only_waiter_clears_the_queue() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let a = pin!(Node::new());
    // SAFETY: pinned on this frame; cancelled before it returns.
    unsafe {
        assert_eq!(gil.enqueue(a.as_ref()), Enqueued::Queued);
        assert_eq!(gil.cancel(a.as_ref()), Cancel::Removed);
    }
    assert!(!gil.has_waiters());
    // SAFETY: we own it.
    unsafe { gil.unlock() };
    assert!(
        !gil.is_locked(),
        "the fast path released it: nobody left to hand to"
    );
}

#[test]
fn cancel_after_grant_reports_ownership() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let a = pin!(Node::new());
    // SAFETY: pinned on this frame; a ends as the owner and releases.
    unsafe {
        assert_eq!(gil.enqueue(a.as_ref()), Enqueued::Queued);
        gil.unlock();
        assert_eq!(
            gil.cancel(a.as_ref()),
            Cancel::Granted,
            "a grant is never lost"
        );
        assert!(gil.is_locked());
        gil.unlock();
    }
    assert!(!gil.is_locked());
}

#[test]
fn requeue_hands_to_the_head_and_queues_behind_everybody() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let (a, b, me) = (
        pin!(Node::new()),
        pin!(Node::new()),
        pin!(Node::returning()),
    );
    // SAFETY: pinned on this frame; all granted in turn.
    unsafe {
        assert_eq!(gil.enqueue(a.as_ref()), Enqueued::Queued);
        assert_eq!(gil.enqueue(b.as_ref()), Enqueued::Queued);
        assert!(gil.requeue(me.as_ref()));
        assert_eq!(a.state(), WaitState::Granted);
        assert_eq!(me.state(), WaitState::Waiting);
        gil.unlock();
        assert_eq!(b.state(), WaitState::Granted);
        assert_eq!(me.state(), WaitState::Waiting, "the yielder is behind b");
        gil.unlock();
        assert_eq!(me.state(), WaitState::Granted);
        gil.unlock();
    }
}

#[test]
fn requeue_with_nobody_waiting_keeps_the_lock() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let me = pin!(Node::returning());
    // SAFETY: we own the lock; `me` is not queued by a `false` requeue.
    unsafe {
        assert!(!gil.requeue(me.as_ref()));
        assert!(!gil.yield_now());
        gil.unlock();
    }
    assert_eq!(me.state(), WaitState::Idle);
}

#[test]
fn drop_request_with_nobody_waiting_is_cleared() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    gil.request_drop();
    assert_eq!(gil.breaker().pending(), Breaker::DROP_REQUEST);
    // SAFETY: we own it.
    assert_eq!(unsafe { gil.checkpoint() }, 0);
    assert_eq!(gil.breaker().pending(), 0);
    assert!(gil.is_locked());
    assert_eq!(gil.switches(), 0);
    // SAFETY: we own it.
    unsafe { gil.unlock() };
}

#[test]
fn checkpoint_reports_other_flags_and_leaves_them_set() {
    let gil: RawGil = RawGil::new();
    let gc = Breaker::runtime_bit(3);
    gil.lock().unwrap();
    // SAFETY: we own it.
    assert_eq!(unsafe { gil.checkpoint() }, 0);
    gil.breaker().set(gc);
    gil.request_drop();
    // SAFETY: we own it.
    assert_eq!(unsafe { gil.checkpoint() }, gc);
    assert_eq!(
        gil.breaker().pending(),
        gc,
        "only the handler clears its own bit"
    );
    assert_eq!(gil.breaker().take(gc | Breaker::DROP_REQUEST), gc);
    // SAFETY: we own it.
    unsafe { gil.unlock() };
}

#[test]
#[should_panic(expected = "runtime breaker bit")]
fn runtime_bit_out_of_range_panics() {
    let n = std::hint::black_box(24);
    let _ = Breaker::runtime_bit(n);
}

#[test]
fn close_fails_fresh_waiters_and_lets_returning_ones_through() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let (fresh1, back, fresh2) = (
        pin!(Node::new()),
        pin!(Node::returning()),
        pin!(Node::new()),
    );
    // SAFETY: pinned on this frame; each ends closed or granted.
    unsafe {
        assert_eq!(gil.enqueue(fresh1.as_ref()), Enqueued::Queued);
        assert_eq!(gil.enqueue(back.as_ref()), Enqueued::Queued);
        assert_eq!(gil.enqueue(fresh2.as_ref()), Enqueued::Queued);
        gil.close();
        assert!(gil.is_closed() && gil.is_locked(), "the owner goes on");
        assert_eq!(fresh1.state(), WaitState::Closed);
        assert_eq!(fresh2.state(), WaitState::Closed);
        assert_eq!(back.state(), WaitState::Waiting);
        assert_eq!(gil.cancel(fresh1.as_ref()), Cancel::Closed);
        gil.unlock();
        assert_eq!(back.state(), WaitState::Granted);
        gil.unlock();
    }
    assert!(!gil.is_locked());
    assert_eq!(gil.try_lock(), Err(TryLockError::Closed));
    assert_eq!(gil.lock(), Err(gil_core::Closed));
    let late = pin!(Node::new());
    // SAFETY: pinned here; a closed enqueue does not queue it.
    assert_eq!(unsafe { gil.enqueue(late.as_ref()) }, Enqueued::Closed);
    gil.relock();
    assert!(
        gil.is_locked(),
        "a thread coming back still gets the lock after close"
    );
    gil.close();
    // SAFETY: relock made us the owner.
    unsafe { gil.unlock() };
    assert!(!gil.is_locked() && gil.is_closed());
}

#[test]
fn a_static_lock_is_const_constructible() {
    static GIL: RawGil = RawGil::new();
    static OTHER: RawGil = RawGil::new();
    GIL.lock().unwrap();
    OTHER.lock().unwrap();
    // SAFETY: we own both.
    unsafe {
        OTHER.unlock();
        GIL.unlock();
    }
}

#[test]
fn runtime_bits_are_distinct_and_clear_of_the_core_and_std_bits() {
    let mut seen = 0u32;
    for n in 0..24 {
        let bit = Breaker::runtime_bit(n);
        assert_eq!(bit.count_ones(), 1, "bit {n} is one bit");
        assert_eq!(bit & !Breaker::RUNTIME_BITS, 0, "bit {n} is a runtime bit");
        assert_eq!(seen & bit, 0, "bit {n} is new");
        seen |= bit;
    }
    assert_eq!(seen, Breaker::RUNTIME_BITS);
    assert_eq!(
        Breaker::DROP_REQUEST & (Breaker::STD_BITS | Breaker::RUNTIME_BITS),
        0
    );
    assert_eq!(Breaker::STD_BITS & Breaker::RUNTIME_BITS, 0);
}

#[test]
fn debug_and_display_say_what_they_show() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let node = pin!(Node::new());
    // SAFETY: pinned here and cancelled below.
    assert_eq!(unsafe { gil.enqueue(node.as_ref()) }, Enqueued::Queued);
    let debug = format!("{gil:?} {node:?}");
    for shown in [
        "locked: true",
        "has_waiters: true",
        "closed: false",
        "state: Waiting",
    ] {
        assert!(debug.contains(shown), "{debug}");
    }
    // SAFETY: queued above by this thread.
    assert_eq!(unsafe { gil.cancel(node.as_ref()) }, Cancel::Removed);
    // SAFETY: we own it.
    unsafe { gil.unlock() };
    assert_eq!(gil_core::Closed.to_string(), "the GIL is closed");
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "dropped while still queued")]
fn dropping_a_queued_waiter_is_caught_in_debug_builds() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    // ManuallyDrop: the memory stays valid after the drop below, so the dangling queue entry
    // this contract breach leaves behind is never a dangling pointer (nothing touches it again).
    let mut node = std::mem::ManuallyDrop::new(Node::new());
    // SAFETY: `node` is not moved while queued (only dropped in place, below).
    let pinned = unsafe { std::pin::Pin::new_unchecked(&*node) };
    // SAFETY: see above; this test breaks the contract on purpose, by dropping it while queued.
    assert_eq!(unsafe { gil.enqueue(pinned) }, Enqueued::Queued);
    // SAFETY: dropped once, in place; never used afterwards.
    unsafe { std::ptr::drop_in_place(&mut *node) };
}

/// `unlock_away` with nobody waiting releases; with waiters it offers the lock to the head
/// only, and an owner back before the claim keeps it.
#[test]
fn an_away_owner_offers_the_head_and_can_come_back_first() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    // SAFETY: we own it.
    let away = unsafe { gil.unlock_away() };
    assert!(!gil.is_locked(), "nobody waited: simply released");
    assert!(!gil.reclaim(away));
    gil.relock();

    let (a, b) = (pin!(Node::new()), pin!(Node::new()));
    for w in [a.as_ref(), b.as_ref()] {
        // SAFETY: pinned on this frame; both end granted before it returns.
        assert_eq!(unsafe { gil.enqueue(w) }, Enqueued::Queued);
    }
    // SAFETY: we own it.
    let away = unsafe { gil.unlock_away() };
    assert_eq!(a.state(), WaitState::Offered);
    assert_eq!(b.state(), WaitState::Waiting, "only the head is offered");
    assert!(gil.is_locked() && gil.try_lock().is_err(), "nobody barges");
    assert!(gil.reclaim(away), "back before the claim");
    assert_eq!(a.state(), WaitState::Waiting, "the offer is withdrawn");
    // SAFETY: a's thread (this one, as a logical thread) saw an offer earlier.
    assert_eq!(unsafe { gil.claim(a.as_ref()) }, WaitState::Waiting);

    // Absence again; this time the head claims, and the owner must queue.
    // SAFETY: we own it.
    let away = unsafe { gil.unlock_away() };
    // SAFETY: a is queued and offered.
    assert_eq!(unsafe { gil.claim(a.as_ref()) }, WaitState::Granted);
    assert_eq!(gil.switches(), 1);
    // a goes away in turn: b is offered. The first owner's reclaim must not take a's absence
    // for its own: that would put it ahead of b, who queued before it came back.
    // SAFETY: a owns it.
    let a_away = unsafe { gil.unlock_away() };
    assert_eq!(b.state(), WaitState::Offered);
    assert!(!gil.reclaim(away), "an old absence is not reclaimed");
    assert!(gil.reclaim(a_away));
    // SAFETY: a owns it again; the release grants b.
    unsafe { gil.unlock() };
    assert_eq!(b.state(), WaitState::Granted);
    // SAFETY: b owns it.
    unsafe { gil.unlock() };
    assert!(!gil.is_locked());
}

/// A waiter offered the lock that cancels (its deadline passed) owns it; only the head is
/// offered.
#[test]
fn an_offer_goes_to_a_cancelling_head() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let (a, b) = (pin!(Node::new()), pin!(Node::new()));
    // SAFETY: pinned on this frame; settled before it returns.
    unsafe {
        assert_eq!(gil.enqueue(a.as_ref()), Enqueued::Queued);
        assert_eq!(gil.enqueue(b.as_ref()), Enqueued::Queued);
    }
    // SAFETY: we own it.
    let away = unsafe { gil.unlock_away() };
    assert_eq!(a.state(), WaitState::Offered);
    assert_eq!(b.state(), WaitState::Waiting, "only the head is offered");
    // SAFETY: a is queued; cancelling an offered waiter hands it the lock.
    assert_eq!(unsafe { gil.cancel(a.as_ref()) }, Cancel::Granted);
    assert!(!gil.reclaim(away));
    // SAFETY: a owns it; the release grants b.
    unsafe { gil.unlock() };
    assert_eq!(b.state(), WaitState::Granted);
    // SAFETY: b owns it.
    unsafe { gil.unlock() };
}

/// An absence that `close` ended (the offered waiter was its last, and fresh) is over: when a
/// returning thread then takes the free lock and goes away in turn — with no handoff between
/// the two absences — the first owner's reclaim must not take the second absence for its own.
/// (Found by the reference model; reclaim used to compare the count of handoffs.)
#[test]
fn a_reclaim_never_takes_a_later_absence_after_close() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let fresh = pin!(Node::new());
    // SAFETY: pinned on this frame; closed out below.
    assert_eq!(unsafe { gil.enqueue(fresh.as_ref()) }, Enqueued::Queued);
    // SAFETY: we own it.
    let first = unsafe { gil.unlock_away() };
    assert_eq!(fresh.state(), WaitState::Offered);
    gil.close();
    assert_eq!(fresh.state(), WaitState::Closed);
    assert!(!gil.is_locked(), "nobody left to offer it to: free");

    // Another thread, back from its own region, takes the free lock and goes away with a
    // returning waiter queued behind it.
    gil.relock();
    let back = pin!(Node::returning());
    // SAFETY: pinned on this frame; granted below.
    assert_eq!(unsafe { gil.enqueue(back.as_ref()) }, Enqueued::Queued);
    // SAFETY: the second owner owns it.
    let second = unsafe { gil.unlock_away() };
    assert_eq!(gil.switches(), 0, "no handoff between the two absences");
    assert!(!gil.reclaim(first), "the first absence is over");
    assert_eq!(back.state(), WaitState::Offered, "still offered");
    assert!(gil.reclaim(second));
    // SAFETY: the second owner owns it again; the release grants the waiter.
    unsafe { gil.unlock() };
    assert_eq!(back.state(), WaitState::Granted);
    // SAFETY: the waiter owns it.
    unsafe { gil.unlock() };
}

/// `take` and `set` leave the loan protocol's bits alone: an ask stands through a `take` of
/// every bit.
#[test]
fn take_leaves_a_standing_ask_alone() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    assert!(gil.ask_loan());
    gil.breaker().set(Breaker::DROP_REQUEST);
    assert_eq!(gil.breaker().take(u32::MAX), Breaker::DROP_REQUEST);
    assert_eq!(
        gil.breaker().pending(),
        Breaker::LOAN_ASKED,
        "the ask was taken"
    );
    // SAFETY: this thread owns the lock, and the ask stands.
    assert!(unsafe { gil.lend_asked() });
    // SAFETY: lent just above; here this thread is its own borrower.
    unsafe { gil.give_back() };
    // SAFETY: the loan is back; we own it.
    unsafe { gil.unlock() };
}

/// A `take` of every bit leaves a loan under way alone: a holder that takes all its flags at a
/// checkpoint while its lock is lent does not end the loan.
#[test]
fn a_take_of_every_bit_leaves_a_loan_out() {
    on_a_loan_to_itself(|gil| {
        gil.breaker().take(u32::MAX);
        assert_eq!(gil.loan(), Loan::Lent, "the take ended the loan");
    });
}

/// Runs `check` on a lock that this thread asked for a loan of, holding, and lent to itself;
/// then gives the loan back and lets the lock go.
fn on_a_loan_to_itself(check: impl FnOnce(&RawGil)) {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    assert!(gil.ask_loan());
    // SAFETY: this thread owns the lock, and the ask stands.
    assert!(unsafe { gil.lend_asked() });
    check(&gil);
    // SAFETY: lent above; here this thread is its own borrower.
    unsafe { gil.give_back() };
    // SAFETY: the loan is back; we own it.
    unsafe { gil.unlock() };
}

/// A holder lends only on an ask that stands: none made, or one withdrawn (the asker gave up
/// between the holder's look and its lend), and nothing is lent.
#[test]
fn nothing_is_lent_without_an_ask_that_stands() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    // SAFETY: this thread owns the lock.
    assert!(!unsafe { gil.lend_asked() }, "lent with no ask");
    assert!(gil.ask_loan());
    // SAFETY: this thread made the ask, and nobody answered it.
    assert!(unsafe { gil.withdraw_loan() });
    // SAFETY: as above.
    assert!(!unsafe { gil.lend_asked() }, "lent on a withdrawn ask");
    // SAFETY: we own it.
    unsafe { gil.unlock() };
}

/// A loan under way is not a pending flag: a holder's checkpoint on the loan sees nothing to do.
#[test]
fn a_loan_out_is_not_pending() {
    on_a_loan_to_itself(|gil| {
        assert_eq!(gil.breaker().pending(), 0, "the loan shows as pending");
    });
}

/// A waiter's word that the core has changed (granted) is not marked asleep: the waiter must
/// not sleep through a grant.
#[test]
fn a_granted_word_is_not_marked_asleep() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let w = pin!(Node::new());
    // SAFETY: pinned on this frame; granted below.
    assert_eq!(unsafe { gil.enqueue(w.as_ref()) }, Enqueued::Queued);
    // SAFETY: we own it; the release grants w.
    unsafe { gil.unlock() };
    assert_eq!(w.state(), WaitState::Granted);
    assert!(
        !gil_core::mark_asleep(w.word()),
        "marked asleep after its grant"
    );
    // SAFETY: w owns it.
    unsafe { gil.unlock() };
}

/// A `close` that fails the fresh waiter offered the lock while its owner is away offers it to
/// the returning waiter that leads now, rather than leaving it to wait on the owner.
#[test]
fn a_close_that_fails_the_offered_head_offers_the_next() {
    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    let (fresh, back) = (pin!(Node::new()), pin!(Node::returning()));
    // SAFETY: pinned on this frame; both settle below.
    unsafe {
        assert_eq!(gil.enqueue(fresh.as_ref()), Enqueued::Queued);
        assert_eq!(gil.enqueue(back.as_ref()), Enqueued::Queued);
    }
    // SAFETY: we own it.
    let away = unsafe { gil.unlock_away() };
    assert_eq!(fresh.state(), WaitState::Offered);
    gil.close();
    assert_eq!(fresh.state(), WaitState::Closed);
    assert_eq!(
        back.state(),
        WaitState::Offered,
        "the offer was not passed on"
    );
    // SAFETY: back is queued and offered.
    assert_eq!(unsafe { gil.claim(back.as_ref()) }, WaitState::Granted);
    assert!(!gil.reclaim(away));
    // SAFETY: back owns it.
    unsafe { gil.unlock() };
    assert!(!gil.is_locked());
}

/// A policy whose `park` panics while its thread is queued: unwinding would free the node with
/// the queue still linking to it, so the process aborts instead (checked in a child process:
/// this test binary, running only this test).
#[test]
#[cfg_attr(miri, ignore = "runs a child process, which Miri cannot")]
fn a_policy_that_panics_while_queued_aborts() {
    use std::process::{Command, Stdio};
    const CHILD: &str = "GIL_CORE_PANICKING_POLICY";
    if std::env::var_os(CHILD).is_some() {
        struct Panics;
        impl WaitPolicy<SpinPark> for Panics {
            fn park(&mut self, _: core::pin::Pin<&Waiter<SpinPark>>) {
                panic!("the policy panics");
            }
        }
        let gil: RawGil = RawGil::new();
        gil.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let node = core::pin::pin!(Waiter::new());
                let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // SAFETY: the node is pinned here; this thread does not own the lock.
                    unsafe { gil.lock_with_waiter(node.as_ref(), &mut Panics) }
                }));
                // Not reached: the process aborted.
                std::process::exit(if unwound.is_err() { 3 } else { 4 });
            });
        });
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_policy_that_panics_while_queued_aborts",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the wait unwound: {stderr}");
    assert_eq!(
        out.status.code(),
        None,
        "the child exited instead of aborting: {stderr}"
    );
    assert!(stderr.contains("half-way through a wait"), "{stderr}");
}

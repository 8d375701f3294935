//! Loom models of the core protocol. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p gil-core --test loom --profile loom`
//! (`scripts/test` does). Bounds and the bug each model catches: `docs/verification.md`.
#![cfg(loom)]

mod support;

use std::pin::{Pin, pin};
use std::task::Poll;

use gil_core::model::{Cancel, Enqueued, Steps, WaiterSteps};
use gil_core::{
    AtomicU32, Back, Park, PollPolicy, RawGil, Return, WaitPolicy, WaitState, Waited, Waiter,
};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Mutex};
use loom::thread;
use support::{Protected, model};

/// Waiters sleep with loom's park/unpark, which loom checks for lost wake-ups. A waiter marks
/// its word asleep before it parks, as the futex strategy does, so the models check that the
/// core wakes every waiter it finds asleep (and only those get woken).
struct LoomPark;

impl Park for LoomPark {
    type Parker = thread::Thread;
    type Unparker = thread::Thread;

    fn parker() -> thread::Thread {
        thread::current()
    }
    fn unparker(parker: &thread::Thread, _: &AtomicU32) -> thread::Thread {
        parker.clone()
    }
    fn park(_: &thread::Thread, word: &AtomicU32) {
        if gil_core::mark_asleep(word) {
            thread::park();
        }
    }
    fn unpark(unparker: thread::Thread) {
        unparker.unpark();
    }

    /// A futex, for the lender: the look at the word and the sign-up to be woken happen under
    /// one mutex, which the wake takes too, so a give-back between the lender's look and its
    /// sleep is not lost (loom's unpark before park makes the park return).
    fn park_word(word: &AtomicU32, value: u32) {
        let mut sleeper = SLEEPER.lock().unwrap();
        // Relaxed: as the kernel's look; the core rereads the word with Acquire.
        if word.load(Relaxed) != value {
            return;
        }
        *sleeper = Some(thread::current());
        drop(sleeper);
        thread::park();
    }

    fn unpark_word(_: &AtomicU32) {
        if let Some(sleeper) = SLEEPER.lock().unwrap().take() {
            sleeper.unpark();
        }
    }
}

loom::lazy_static! {
    /// The thread asleep in `LoomPark::park_word` (each model has one lock and one lender).
    static ref SLEEPER: Mutex<Option<thread::Thread>> = Mutex::new(None);
}

type Gil = RawGil<LoomPark>;
type Node = Waiter<LoomPark>;

/// Waits for a flag another thread sets. After two yields, stops exploring this branch: loom
/// would otherwise alternate two such waiters forever (tokio-rs/loom#53); see `SpinWait` in
/// gil-core's `sync.rs` for why nothing is lost.
fn wait_for(flag: &AtomicBool) {
    let mut rounds = 0;
    while !flag.load(Acquire) {
        rounds += 1;
        if rounds == 2 {
            loom::skip_branch();
        }
        thread::yield_now();
    }
}

/// Exclusion (docs/contract.md): at most one owner, with three threads contending (one of
/// them yielding at a checkpoint on a drop request), and every owner sees the previous
/// owner's writes.
#[test]
fn mutual_exclusion_three_threads() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let spawn = |yielder: bool| {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                gil.lock().unwrap();
                data.bump();
                if yielder {
                    gil.request_drop();
                    // SAFETY: this thread owns the lock.
                    unsafe { gil.checkpoint() };
                    data.bump();
                }
                // SAFETY: this thread owns the lock.
                unsafe { gil.unlock() };
            })
        };
        let threads = [spawn(true), spawn(false)];
        gil.lock().unwrap();
        data.bump();
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
        for t in threads {
            t.join().unwrap();
        }
        gil.lock().unwrap();
        assert_eq!(data.bump(), 5, "every critical section ran exactly once");
    });
}

/// FIFO handoff (docs/contract.md): a thread that queued behind another is never served
/// first, and nobody barges past a queued waiter while the owner releases.
#[test]
fn fifo_no_overtaking() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let tickets = Arc::new(AtomicUsize::new(0));
        let first_queued = Arc::new(AtomicBool::new(false));
        gil.lock().unwrap();

        let first = {
            let (gil, tickets, first_queued) = (gil.clone(), tickets.clone(), first_queued.clone());
            thread::spawn(move || {
                let node = pin!(Node::new());
                // SAFETY: the node is pinned on this frame and waited for before it returns.
                assert_eq!(unsafe { gil.enqueue(node.as_ref()) }, Enqueued::Queued);
                first_queued.store(true, Release);
                assert_eq!(node.as_ref().wait(), WaitState::Granted);
                assert_eq!(
                    tickets.fetch_add(1, Relaxed),
                    0,
                    "the first in line went second"
                );
                // SAFETY: this thread owns the lock.
                unsafe { gil.unlock() };
            })
        };
        let second = {
            let (gil, tickets, first_queued) = (gil.clone(), tickets.clone(), first_queued.clone());
            thread::spawn(move || {
                wait_for(&first_queued);
                gil.lock().unwrap();
                assert_eq!(
                    tickets.fetch_add(1, Relaxed),
                    1,
                    "the second in line went first"
                );
                // SAFETY: this thread owns the lock.
                unsafe { gil.unlock() };
            })
        };
        wait_for(&first_queued);
        // SAFETY: the main thread owns the lock. Released while `second` may be arriving.
        unsafe { gil.unlock() };
        first.join().unwrap();
        second.join().unwrap();
        assert_eq!(tickets.load(Relaxed), 2);
    });
}

/// Drop requests (docs/contract.md): a drop request makes the owner hand the lock to the
/// waiter at its checkpoint, and the yielding owner cannot get it back before the requester
/// has run.
#[test]
fn drop_request_hands_off_and_yielder_waits_its_turn() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let requester_ran = Arc::new(AtomicBool::new(false));
        gil.lock().unwrap();

        let requester = {
            let (gil, data, ran) = (gil.clone(), data.clone(), requester_ran.clone());
            thread::spawn(move || {
                let node = pin!(Node::new());
                // SAFETY: the node is pinned on this frame and waited for before it returns.
                assert_eq!(unsafe { gil.enqueue(node.as_ref()) }, Enqueued::Queued);
                gil.request_drop();
                assert_eq!(node.as_ref().wait(), WaitState::Granted);
                data.bump();
                ran.store(true, Relaxed);
                // SAFETY: this thread owns the lock.
                unsafe { gil.unlock() };
            })
        };
        // The owner's hot loop: it never releases, only checks in.
        loop {
            let switches = gil.switches();
            // SAFETY: the main thread owns the lock (it gets it back before checkpoint returns).
            unsafe { gil.checkpoint() };
            data.bump();
            if gil.switches() != switches {
                assert!(
                    requester_ran.load(Relaxed),
                    "the yielder retook the lock first"
                );
                break;
            }
            thread::yield_now();
        }
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
        requester.join().unwrap();
    });
}

/// A cancel (a timeout, say) racing with the grant never loses the lock: either the waiter
/// is removed and the lock ends free, or the canceller learns it owns the lock.
#[test]
fn cancel_racing_with_grant() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        gil.lock().unwrap();

        let canceller = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let node = pin!(Node::new());
                // SAFETY: the node is pinned on this frame and cancelled before it returns.
                unsafe {
                    if gil.enqueue(node.as_ref()) == Enqueued::Acquired {
                        // The owner released before we got in line: we own it, nothing to cancel.
                        data.bump();
                        gil.unlock();
                        return true;
                    }
                    match gil.cancel(node.as_ref()) {
                        Cancel::Removed => false,
                        Cancel::Granted => {
                            data.bump();
                            gil.unlock();
                            true
                        }
                        Cancel::Closed => unreachable!("nobody closes"),
                    }
                }
            })
        };
        data.bump();
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
        let got_it = canceller.join().unwrap();
        assert!(
            !gil.is_locked() && !gil.has_waiters(),
            "the lock was lost (got_it={got_it})"
        );
        assert_eq!(gil.try_lock(), Ok(()));
        assert_eq!(data.bump(), if got_it { 3 } else { 2 });
    });
}

/// Close (docs/contract.md), in the core: closing while a thread waits wakes it with `Closed`
/// (or it got the lock first); nobody hangs, the owner finishes, and a returning thread still
/// gets back in.
#[test]
fn close_while_waiting() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        gil.lock().unwrap();
        let waiter = {
            let gil = gil.clone();
            thread::spawn(move || match gil.lock() {
                Ok(()) => {
                    // SAFETY: this thread owns the lock.
                    unsafe { gil.unlock() };
                    true
                }
                Err(_) => false,
            })
        };
        gil.close();
        // SAFETY: the main thread still owns the lock: close lets owners finish.
        unsafe { gil.unlock() };
        let got_in = waiter.join().unwrap();
        assert!(
            !got_in,
            "the lock was held until after close: the waiter must fail"
        );
        gil.relock();
        // SAFETY: relock made the main thread the owner.
        unsafe { gil.unlock() };
    });
}

/// `try_lock` on a free lock never fails spuriously, even while another thread holds the
/// queue lock (here `close`, which edits the queue of a free lock): it waits out the edit and
/// reports what it finds, `Ok` or `Closed`, never `WouldBlock`.
#[test]
fn try_lock_on_a_free_lock_never_spuriously_fails() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let closer = {
            let gil = gil.clone();
            thread::spawn(move || gil.close())
        };
        match gil.try_lock() {
            // SAFETY: the main thread owns the lock.
            Ok(()) => unsafe { gil.unlock() },
            Err(e) => assert_eq!(e, gil_core::TryLockError::Closed, "nobody else holds it"),
        }
        closer.join().unwrap();
    });
}

/// The region composites: a thread lets the lock go for a blocking region (`let_go`) while
/// another waits for it, and takes it back (`take_back_with`) going ahead of the line: it
/// reclaims the lock, or borrows it from the holder's checkpoint, or waits its turn, or takes
/// it free. Every way, one thread at a time and every critical section once; and a
/// second region, on a loan, gives the loan back (`let_go`) instead of letting the lock go.
#[test]
fn a_region_lets_go_and_takes_the_lock_back() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let held = Arc::new(AtomicBool::new(false));
        gil.lock().unwrap();
        let other = {
            let (gil, data, held) = (gil.clone(), data.clone(), held.clone());
            thread::spawn(move || {
                wait_for(&held);
                gil.lock().unwrap();
                data.bump();
                // Room for the other thread to come back and ask before the checkpoint: loom
                // explores a switch here only if a thread yields.
                thread::yield_now();
                thread::yield_now();
                // SAFETY: this thread owns the lock.
                unsafe { gil.checkpoint() };
                data.bump();
                // SAFETY: this thread owns the lock (back from a loan, if it lent).
                unsafe { gil.unlock() };
            })
        };
        data.bump();
        held.store(true, Release);
        // SAFETY: the main thread owns the lock, and does not use it until it is back.
        let away = unsafe { gil.let_go() };
        let mut ahead = Ahead;
        // SAFETY: let go just above.
        let back = unsafe { gil.take_back_with(away, &mut ahead) };
        data.bump();
        if back == Back::BreakerLoan {
            // On the loan: the next region gives it back, and the lock is taken in line.
            // SAFETY: this thread holds the lock on a loan, and stops using it.
            let away = unsafe { gil.let_go() };
            assert!(!gil.is_lent(), "the region gave the loan back");
            // SAFETY: let go just above.
            let again = unsafe { gil.take_back_with(away, &mut InLine) };
            assert_ne!(again, Back::Reclaimed, "a loan given back is not reclaimed");
        }
        data.bump();
        // SAFETY: the main thread holds the lock, not on loan.
        unsafe { gil.unlock() };
        other.join().unwrap();
        gil.lock().unwrap();
        assert_eq!(data.bump(), 6, "every critical section ran once");
    });
}

/// Goes ahead of the line, asking for a loan with two looks.
struct Ahead;

impl Return<LoomPark> for Ahead {
    type Ask = Looks;
    type Wait = ();

    fn ahead(&mut self) -> Option<Looks> {
        Some(Looks(0))
    }
    fn in_line(&mut self, _: Option<Looks>) {}
    fn granted(&mut self, _: ()) {}
}

/// Waits its turn.
struct InLine;

impl Return<LoomPark> for InLine {
    type Ask = Looks;
    type Wait = ();

    fn ahead(&mut self) -> Option<Looks> {
        None
    }
    fn in_line(&mut self, _: Option<Looks>) {}
    fn granted(&mut self, _: ()) {}
}

/// Stays awake for two looks.
struct Looks(u32);

impl WaitPolicy<LoomPark> for Looks {
    fn spin(&mut self) -> bool {
        self.0 += 1;
        if self.0 > 2 {
            return false;
        }
        thread::yield_now();
        true
    }
}

/// An owner away in a blocking region (`unlock_away`) against two waiters, one of which goes
/// away in turn: at most one owner at a time (the offered head's claim against the owner's
/// reclaim), every critical section runs exactly once, and nobody is left waiting on an offer
/// (loom reports a deadlock if every thread parks).
#[test]
fn an_away_owner_and_its_waiters_exclude_each_other() {
    model(3, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let spawn = |goes_away: bool| {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                gil.lock().unwrap();
                data.bump();
                if goes_away {
                    // SAFETY: this thread owns the lock, and takes it back before `bump`.
                    let away = unsafe { gil.unlock_away() };
                    if !gil.reclaim(away) {
                        gil.relock();
                    }
                    data.bump();
                }
                // SAFETY: this thread owns the lock.
                unsafe { gil.unlock() };
            })
        };
        let threads = [spawn(true), spawn(false)];
        gil.lock().unwrap();
        data.bump();
        // SAFETY: the main thread owns the lock, and takes it back before `bump`.
        let away = unsafe { gil.unlock_away() };
        if !gil.reclaim(away) {
            gil.relock();
        }
        data.bump();
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
        for t in threads {
            t.join().unwrap();
        }
        gil.lock().unwrap();
        assert_eq!(data.bump(), 6, "every critical section ran exactly once");
    });
}

/// An offer is never stranded: the owner goes away while a fresh waiter (which may time out)
/// and a returning one queue, and the owner closes the lock while away. A fresh waiter that cancels
/// while offered owns the lock; one closed while offered passes the offer on (or frees the lock
/// if nobody is left); the owner comes back either way.
#[test]
fn an_offer_survives_cancel_and_close() {
    model(3, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let queued = Arc::new(AtomicBool::new(false));
        gil.lock().unwrap();
        let fresh = {
            let (gil, data, queued) = (gil.clone(), data.clone(), queued.clone());
            thread::spawn(move || {
                let node = pin!(Node::new());
                // SAFETY: pinned on this frame; cancelled or waited for before it returns.
                let enqueued = unsafe { gil.enqueue(node.as_ref()) };
                queued.store(true, Release);
                match enqueued {
                    Enqueued::Queued => {}
                    Enqueued::Closed => return,
                    Enqueued::Acquired => unreachable!("the main thread holds the lock"),
                }
                // Its deadline passed: cancel. Offered counts as granted.
                // SAFETY: queued above by this thread, not yet acted on.
                if let Cancel::Granted = unsafe { gil.cancel(node.as_ref()) } {
                    data.bump();
                    // SAFETY: granted, so this thread owns the lock.
                    unsafe { gil.unlock() };
                }
            })
        };
        let returning = {
            let (gil, data, queued) = (gil.clone(), data.clone(), queued.clone());
            thread::spawn(move || {
                wait_for(&queued);
                gil.relock(); // behind the fresh waiter, if it is still queued
                data.bump();
                // SAFETY: relocked, so this thread owns the lock.
                unsafe { gil.unlock() };
            })
        };
        wait_for(&queued);
        // SAFETY: the main thread owns the lock, and takes it back before `bump`.
        let away = unsafe { gil.unlock_away() };
        gil.close(); // while away: the waiters race with it
        if !gil.reclaim(away) {
            gil.relock();
        }
        data.bump();
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
        fresh.join().unwrap();
        returning.join().unwrap();
        assert!(!gil.is_locked(), "the lock is free at the end");
    });
}

/// A thread asks for a loan while the owner works (docs/contract.md, "Fast return from
/// blocking"), and the owner's checkpoint races with the asker's withdrawal: the checkpoint
/// lends the lock and sleeps until it comes back, or finds the ask withdrawn and goes on, and
/// the asker then locks. Either way at most one thread touches the data at a time and each
/// sees the other's writes (the grant and the give-back publish them), the asker is never
/// wrong about holding a loan, and the lender is woken (a lost wake-up leaves it parked: loom
/// reports the deadlock).
#[test]
fn a_loan_asked_for_is_lent_and_comes_back() {
    loan_model(true);
}

/// As above, with the owner letting go instead of lending: the asker sees the lock unheld,
/// withdraws and locks, and nobody is left waiting on an ask nobody can answer.
#[test]
fn an_ask_for_a_loan_is_withdrawn_when_the_lock_is_let_go() {
    loan_model(false);
}

fn loan_model(lend: bool) {
    model(4, move || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let asked = Arc::new(AtomicBool::new(false));
        gil.lock().unwrap();
        let borrower = {
            let (gil, data, asked) = (gil.clone(), data.clone(), asked.clone());
            thread::spawn(move || {
                borrow_or_lock(&gil, &asked);
                data.bump();
                // SAFETY: lent or locked just above.
                unsafe { release(&gil) };
            })
        };
        data.bump();
        wait_for(&asked);
        if lend {
            // SAFETY: the main thread owns the lock.
            unsafe { gil.checkpoint() };
            data.bump();
        }
        // SAFETY: the main thread owns the lock (back from a loan, if it lent).
        unsafe { gil.unlock() };
        borrower.join().unwrap();
        gil.lock().unwrap();
        let expected = if lend { 4 } else { 3 };
        assert_eq!(
            data.bump(),
            expected,
            "every critical section ran exactly once"
        );
    });
}

/// As above, with the borrower asked to drop the lock while on loan: its checkpoint gives the
/// loan back, leaves the request for its lender's slice, and comes back in line; the lender,
/// back, answers the request at its next checkpoint by handing the lock to it. Nobody is
/// stranded: not the lender waiting for its loan, not the borrower waiting in line.
#[test]
fn a_borrower_asked_to_drop_gives_the_loan_back_first() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let asked = Arc::new(AtomicBool::new(false));
        let lent = Arc::new(AtomicBool::new(false));
        gil.lock().unwrap();
        let borrower = {
            let (gil, data, asked, lent) = (gil.clone(), data.clone(), asked.clone(), lent.clone());
            thread::spawn(move || {
                if borrow_or_lock(&gil, &asked) {
                    // Release: read by the lender once its loan is back.
                    lent.store(true, Release);
                }
                data.bump();
                gil.request_drop();
                // SAFETY: this thread holds the lock, on loan or its own.
                unsafe { gil.checkpoint() };
                assert!(!gil.is_lent(), "a loan outlived a drop request");
                data.bump();
                // SAFETY: the checkpoint returned with the lock held, and not on loan.
                unsafe { gil.unlock() };
            })
        };
        data.bump();
        wait_for(&asked);
        // SAFETY: the main thread owns the lock.
        unsafe { gil.checkpoint() };
        data.bump();
        // Acquire: pairs with the borrower's Release, ordered before its give-back.
        let lent = lent.load(Acquire);
        if lent {
            // The borrower, having given the loan back, queues; a request answered with
            // nobody in line is only cleared.
            while !gil.has_waiters() {
                thread::yield_now();
            }
        }
        // SAFETY: the main thread owns the lock.
        unsafe { gil.checkpoint() };
        let sections = data.bump();
        if lent {
            assert_eq!(
                sections, 5,
                "the request left for the lender was answered at its next checkpoint"
            );
        }
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
        borrower.join().unwrap();
        gil.lock().unwrap();
        assert_eq!(data.bump(), 6, "every critical section ran exactly once");
    });
}

/// Asks for a loan through the core's `borrow_with`, says so in `asked`, and waits for it (two
/// looks, then withdraws); takes the lock the ordinary way if the ask was refused or
/// withdrawn. Returns whether it holds the lock on loan.
fn borrow_or_lock(gil: &Gil, asked: &AtomicBool) -> bool {
    let mut looks = TwoLooks { asked, looks: 0 };
    if gil.borrow_with(&mut looks) {
        return true;
    }
    asked.store(true, Release);
    gil.lock().unwrap();
    false
}

/// A policy that says when the wait stands (`asked`), stays awake for two looks, and then, in a
/// wait in line, gives up.
struct TwoLooks<'a> {
    asked: &'a AtomicBool,
    looks: u32,
}

impl WaitPolicy<LoomPark> for TwoLooks<'_> {
    fn queued(&mut self) {
        self.asked.store(true, Release);
    }

    fn spin(&mut self) -> bool {
        self.looks += 1;
        if self.looks > 2 {
            return false;
        }
        thread::yield_now();
        true
    }

    fn give_up(&mut self) -> bool {
        self.looks >= 2
    }
}

/// The core's wait composite giving up (a timeout, say) while the owner lets go: the give-up
/// races with the grant, and either the waiter is taken out and the lock ends free, or the
/// wait reports the lock granted and the waiter owns it. Never both, never neither.
#[test]
fn a_wait_that_gives_up_never_loses_a_grant() {
    model(4, || {
        a_give_up_racing_the_release(|gil: &Gil| {
            let asked = AtomicBool::new(false);
            let node = pin!(Node::new());
            // SAFETY: the node is pinned on this frame, and `lock_with_waiter` returns only
            // once it is out of line; this thread does not own the lock.
            unsafe {
                gil.lock_with_waiter(
                    node.as_ref(),
                    &mut TwoLooks {
                        asked: &asked,
                        looks: 0,
                    },
                )
            }
        })
    });
}

/// The owner lets go while another thread waits with `wait`, which may give up: afterwards
/// either the waiter was granted the lock (and ran its section, and let go), or it gave up and
/// the lock is free. Never both, never neither.
fn a_give_up_racing_the_release<P: Park + 'static>(wait: fn(&RawGil<P>) -> Waited)
where
    P::Parker: Send,
{
    let gil = Arc::new(RawGil::<P>::new());
    let data = Arc::new(Protected::new());
    gil.lock().unwrap();
    let waiter = {
        let (gil, data) = (gil.clone(), data.clone());
        thread::spawn(move || match wait(&gil) {
            Waited::Granted => {
                data.bump();
                // SAFETY: granted, so this thread owns the lock.
                unsafe { gil.unlock() };
                true
            }
            Waited::GaveUp => false,
            Waited::Closed => unreachable!("nobody closes"),
        })
    };
    data.bump();
    // SAFETY: the main thread owns the lock.
    unsafe { gil.unlock() };
    let got_it = waiter.join().unwrap();
    assert!(
        !gil.is_locked() && !gil.has_waiters(),
        "the lock was lost (got_it={got_it})"
    );
    assert_eq!(gil.try_lock(), Ok(()));
    assert_eq!(data.bump(), if got_it { 3 } else { 2 });
}

/// Lets go of a lock held on loan (the lock is lent) or owned.
///
/// # Safety
///
/// The calling thread holds the lock.
unsafe fn release(gil: &Gil) {
    // SAFETY: forwarded contract. While the lock is lent, its holder is the borrower.
    unsafe {
        if gil.is_lent() {
            gil.give_back();
        } else {
            gil.unlock();
        }
    }
}

/// Parking for a polled waiter, as a future's: the parker is a slot that each poll's
/// `register` fills with the polling thread (a task's waker). The grant's unparker shares the
/// slot and wakes what it holds at the wake, not what it held when the grant took it (the
/// waiter may register and mark itself asleep in between), as `AtomicWaker` does.
struct TaskPark;

type Slot = Arc<Mutex<Option<thread::Thread>>>;

impl Park for TaskPark {
    type Parker = Slot;
    type Unparker = Slot;

    fn parker() -> Slot {
        Arc::new(Mutex::new(None))
    }
    fn unparker(parker: &Slot, _: &AtomicU32) -> Slot {
        parker.clone()
    }
    fn park(_: &Slot, _: &AtomicU32) {
        unreachable!("a polled waiter never parks through the core")
    }
    fn unpark(unparker: Slot) {
        if let Some(thread) = unparker.lock().unwrap().take() {
            thread.unpark();
        }
    }
}

/// A poll's policy: registers the polling thread as what wakes it.
struct Registers;

impl PollPolicy<TaskPark> for Registers {
    fn register(&mut self, waiter: Pin<&Waiter<TaskPark>>) {
        *waiter.parker().lock().unwrap() = Some(thread::current());
    }
}

/// The poll-shaped wait (`poll_lock`), with an executor that parks its thread between polls:
/// the grant wakes the waiter whichever of the grant and the waiter's mark comes first, and
/// the waiter then owns the lock with the owner's writes visible.
#[test]
fn a_polled_waiter_is_woken_by_its_grant() {
    model(3, || {
        let gil = Arc::new(RawGil::<TaskPark>::new());
        let data = Arc::new(Protected::new());
        gil.lock().unwrap();
        let poller = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let node = pin!(Waiter::<TaskPark>::new());
                loop {
                    // SAFETY: the node is pinned on this frame, polled only here and not after
                    // `Ready`; this thread does not own the lock.
                    match unsafe { gil.poll_lock(node.as_ref(), &mut Registers) } {
                        Poll::Ready(waited) => {
                            assert_eq!(waited, Waited::Granted);
                            break;
                        }
                        // Loom reports a lost wake-up as a deadlock here.
                        Poll::Pending => thread::park(),
                    }
                }
                data.bump();
                // SAFETY: granted, so this thread owns the lock.
                unsafe { gil.unlock() };
            })
        };
        data.bump();
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
        poller.join().unwrap();
        assert_eq!(gil.try_lock(), Ok(()));
        assert_eq!(data.bump(), 3);
    });
}

/// `wake_last_polled` reaches a polled waiter that is in line, whichever of its mark and the wake
/// comes first: the waiter, asleep until woken, either sees the waker's note written before
/// the call at its look after a poll, or is woken and sees it at the look after the next.
/// (A task that leaves the `Gil`'s watch hands it on this way.)
#[test]
fn a_waiter_woken_last_sees_what_came_before() {
    model(3, || {
        let gil = Arc::new(RawGil::<TaskPark>::new());
        let note = Arc::new(AtomicBool::new(false));
        gil.lock().unwrap();
        let poller = {
            let (gil, note) = (gil.clone(), note.clone());
            thread::spawn(move || {
                let node = pin!(Waiter::<TaskPark>::new());
                loop {
                    // SAFETY: as in `a_polled_waiter_is_woken_by_its_grant`; cancelled below
                    // before the frame ends.
                    let polled = unsafe { gil.poll_lock(node.as_ref(), &mut Registers) };
                    assert!(polled.is_pending(), "the lock is held throughout");
                    // Relaxed: what orders the note is the core's, not this load's.
                    if note.load(Relaxed) {
                        break;
                    }
                    // Loom reports a lost wake-up as a deadlock here.
                    thread::park();
                }
                // SAFETY: queued on `gil` by this thread's polls, none of which returned `Ready`.
                let waited = unsafe { gil.cancel_poll(node.as_ref()) };
                assert_eq!(waited, Waited::GaveUp);
            })
        };
        note.store(true, Relaxed);
        gil.wake_last_polled();
        poller.join().unwrap();
        // SAFETY: the main thread owns the lock.
        unsafe { gil.unlock() };
    });
}

/// A polled waiter dropped (`cancel_poll`) while the grant races to it never loses the lock:
/// either it is out of line and the lock ends free, or the canceller learns it owns the lock.
#[test]
fn a_cancelled_poll_never_loses_a_grant() {
    model(4, || {
        a_give_up_racing_the_release(|gil: &RawGil<TaskPark>| {
            let node = pin!(Waiter::<TaskPark>::new());
            // SAFETY: as in `a_polled_waiter_is_woken_by_its_grant`; the node is cancelled
            // before the frame ends, unless its one poll returned `Ready`.
            unsafe {
                match gil.poll_lock(node.as_ref(), &mut Registers) {
                    Poll::Ready(waited) => waited,
                    Poll::Pending => gil.cancel_poll(node.as_ref()),
                }
            }
        })
    });
}

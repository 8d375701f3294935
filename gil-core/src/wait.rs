//! How a thread waits in the composites of [`RawGil`](crate::RawGil): the policy a caller
//! passes, and what the wait came to; and what a holder's checkpoint tells its caller when it
//! lets others hold.

use core::pin::Pin;

use crate::park::Park;
use crate::queue::Waiter;

/// What a waiting thread does between its looks, for the waiting composites of
/// [`RawGil`](crate::RawGil): [`lock_with`](crate::RawGil::lock_with),
/// `borrow_with`, and the steps of
/// [`checkpoint_with`](crate::RawGil::checkpoint_with) and
/// [`take_back_with`](crate::RawGil::take_back_with) that wait (a yield, a loan and its
/// return).
///
/// The core decides who owns the lock, and when; a policy only chooses how to pass the time
/// (spin, sleep, sleep with a timeout), when to give up, and what to note on the way (a clock
/// to arm, an event to report). Every method has a default, and `()` is the plain policy: never
/// give up, sleep with `P`.
///
/// The methods run on the waiting thread, with no lock of the core's held: they may block,
/// read clocks and take other locks. None of them can make the lock unsound, whatever it does:
/// a policy that never returns from [`park`](WaitPolicy::park) only hangs its own thread, and
/// one that panics while its thread is queued, has lent the lock or asked for a loan aborts
/// the process (unwinding would leave the lock half-way).
///
/// ```
/// use gil_core::{RawGil, SpinPark, WaitPolicy, Waited};
///
/// /// Gives up after a number of looks.
/// struct Looks(u32);
///
/// impl WaitPolicy<SpinPark> for Looks {
///     fn give_up(&mut self) -> bool {
///         self.0 = self.0.saturating_sub(1);
///         self.0 == 0
///     }
/// }
///
/// let gil: RawGil = RawGil::new();
/// gil.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let got = gil.lock_with(&mut Looks(3));
///         assert_eq!(got, Waited::GaveUp, "the owner never let go");
///     });
/// });
/// // SAFETY: this thread owns the lock.
/// unsafe { gil.unlock() };
/// ```
pub trait WaitPolicy<P: Park> {
    /// The thread has just joined the line (or lent the lock, or asked for a loan), before its
    /// first look: called once per wait, and only if it must wait.
    #[inline]
    fn queued(&mut self) {}

    /// One round of staying awake before sleeping, for waits expected to end within
    /// microseconds (a loan). Returns whether to keep spinning; the core looks again between
    /// rounds. After the first `false`, the core no longer calls it in this wait. By default,
    /// no spin: [`park`](WaitPolicy::park) itself spins as `P` does.
    #[inline]
    fn spin(&mut self) -> bool {
        false
    }

    /// Whether to stop waiting now (a deadline passed). The core then takes the waiter out of
    /// line, unless the lock was handed to it first: a grant is never lost. Asked before each
    /// sleep. By default, never.
    ///
    /// A *returning* wait (a thread coming back for the lock it let go: a yield, a loan, a
    /// checkpoint's steps, the end of a blocking region) gives up only when the calling thread
    /// owns the lock already, taken another way by code that ran during the wait (a task
    /// polled on its thread). The core then takes the waiter out of line and goes on as if it
    /// had been granted, and the caller settles its two holds. Giving up otherwise would leave
    /// a thread that must get its lock back without it.
    #[inline]
    fn give_up(&mut self) -> bool {
        false
    }

    /// The owner is away in a blocking region and the lock is offered to this waiter: called
    /// before the core claims it (a policy may give the owner a moment to come back first).
    #[inline]
    fn offered(&mut self, waiter: Pin<&Waiter<P>>) {
        let _ = waiter;
    }

    /// Sleeps until the waiter's word may have changed (or spuriously); the core looks again.
    /// By default `P`'s [`park`](Park::park). A policy that sleeps in its own way must follow
    /// the protocol `Park::park` describes.
    #[inline]
    fn park(&mut self, waiter: Pin<&Waiter<P>>) {
        P::park(waiter.parker(), waiter.word());
    }
}

/// The plain policy: never give up, sleep with the lock's [`Park`] strategy.
impl<P: Park> WaitPolicy<P> for () {}

/// What a waiter that must not block its thread (a future's) does at the points of
/// [`RawGil::poll_lock`](crate::RawGil::poll_lock) that are its own: noting that it joined the
/// line, and registering what wakes it before it is marked asleep.
///
/// The methods run on the polling thread with no lock of the core's held. A policy that
/// panics leaves the waiter in line, where [`cancel_poll`](crate::RawGil::cancel_poll) takes
/// it out.
pub trait PollPolicy<P: Park> {
    /// The waiter has just joined the line: called once, at the poll that queued it, and only
    /// if it must wait.
    #[inline]
    fn queued(&mut self) {}

    /// Registers what wakes the polling task (its waker, in the waiter's parker). Called at
    /// every poll that finds the waiter waiting, before the core marks it asleep.
    ///
    /// The grant takes the [`Unparker`](Park::Unparker) before it swaps the waiter's word, and
    /// the waiter may register and mark itself asleep in between: the unparker must therefore
    /// wake what is registered when it wakes (share the slot, as an `AtomicWaker` in an `Arc`
    /// does), not what was registered when it was taken.
    fn register(&mut self, waiter: Pin<&Waiter<P>>);
}

/// What a wait with a [`WaitPolicy`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a wait may end with the lock owned"]
pub enum Waited {
    /// The calling thread owns the lock.
    Granted,
    /// The lock is closed, and the (fresh) waiter was taken out of line; the calling thread
    /// does not own the lock.
    Closed,
    /// The policy gave up, and the waiter was taken out of line; the calling thread does not
    /// own the lock.
    GaveUp,
}

/// What a checkpoint ([`RawGil::checkpoint_with`](crate::RawGil::checkpoint_with)) lets others
/// hold for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// A drop request: the holder hands the lock to the longest waiter and waits in line
    /// behind everybody.
    HandOver,
    /// A drop request to a thread that holds the lock on a loan it asked for
    /// (`borrow_with`): it gives the loan back, and waits in line
    /// behind everybody. The request stays set, for the lender's slice.
    GiveBack,
    /// A loan asked for on the breaker (`ask_loan`): the holder
    /// lends the lock and waits for it back.
    LendOnBreaker,
}

/// What a caller of [`RawGil::checkpoint_with`](crate::RawGil::checkpoint_with) does around
/// each step that lets others hold: the bookkeeping of its layer (guards set aside, clocks,
/// counts, events), and how it waits for the lock back. The core decides which step, and when;
/// `()` does nothing and waits with the plain policy.
///
/// Both methods run on the holder's thread with no lock of the core's held. Between
/// [`letting_go`](Handover::letting_go) and [`back`](Handover::back) other threads may hold the
/// lock: the caller must not use what it protects.
///
/// ```
/// use gil_core::{Handover, RawGil, SpinPark, Step};
///
/// /// Counts the hand-overs.
/// #[derive(Default)]
/// struct Count(u32);
///
/// impl Handover<SpinPark> for Count {
///     type Wait = ();
///     fn letting_go(&mut self, _: Step) {}
///     fn back(&mut self, step: Step, _: (), handed: bool) {
///         self.0 += u32::from(handed && step == Step::HandOver);
///     }
/// }
///
/// let gil: RawGil = RawGil::new();
/// gil.lock().unwrap();
/// gil.request_drop();
/// let mut count = Count::default();
/// // SAFETY: this thread owns the lock.
/// unsafe { gil.checkpoint_with(&mut count) };
/// assert_eq!(count.0, 0, "nobody waited: the request is only cleared");
/// // SAFETY: this thread owns the lock.
/// unsafe { gil.unlock() };
/// ```
pub trait Handover<P: Park> {
    /// How the holder waits for the lock back.
    type Wait: WaitPolicy<P>;

    /// The checkpoint took a drop request (before it acts on it, and also when nobody waits
    /// and it is only cleared).
    #[inline]
    fn drop_requested(&mut self) {}

    /// The holder is about to let others hold for `step` (for [`Step::GiveBack`], before it
    /// gives the loan back); returns the policy it waits with.
    fn letting_go(&mut self, step: Step) -> Self::Wait;

    /// The holder holds again after `step`, its wait over. `handed`: whether another thread
    /// held meanwhile; `false` if nobody took the lock after all (then nothing was waited for).
    fn back(&mut self, step: Step, wait: Self::Wait, handed: bool);
}

/// The plain caller: no bookkeeping, the plain wait.
impl<P: Park> Handover<P> for () {
    type Wait = ();

    #[inline]
    fn letting_go(&mut self, _: Step) {}

    #[inline]
    fn back(&mut self, _: Step, _: (), _: bool) {}
}

/// How a thread back from a blocking region got the lock again
/// ([`RawGil::take_back_with`](crate::RawGil::take_back_with)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a loan asked for is let go only by giving it back"]
pub enum Back {
    /// It reclaimed the lock: nobody had taken the offer, and its turn goes on.
    Reclaimed,
    /// It found the lock free and took it.
    Took,
    /// It holds the lock on a loan it asked for on the breaker: it lets go only with
    /// [`give_back`](crate::RawGil::give_back) (or a composite that gives it back).
    BreakerLoan,
    /// It waited in line (ahead of the ordinary waiters, if it went ahead) and was granted.
    Granted,
}

/// What a thread back from a blocking region decides in
/// [`RawGil::take_back_with`](crate::RawGil::take_back_with): whether it goes ahead of the
/// line, and how it waits. The core decides the order of the ways back; like a
/// [`Handover`], a `Return` only chooses and keeps its books.
pub trait Return<P: Park> {
    /// How the thread waits for an answer to its ask for a loan (awake: nobody would wake
    /// it; see `borrow_with`).
    type Ask: WaitPolicy<P>;
    /// How it waits in line.
    type Wait: WaitPolicy<P>;

    /// The thread could not reclaim the lock. `Some`: it may go ahead of the line (it asks for
    /// a loan on the breaker with this policy, and if the ask is refused or not answered,
    /// waits its turn); `None`: it waits its turn. Called before the thread looks whether the
    /// lock is free.
    fn ahead(&mut self) -> Option<Self::Ask>;

    /// The thread waits its turn in line, behind everybody (after its unanswered `ask`, if it
    /// went ahead): the policy it waits with. A returning wait: it gives up only as
    /// [`WaitPolicy::give_up`] allows.
    fn in_line(&mut self, ask: Option<Self::Ask>) -> Self::Wait;

    /// The wait in line is over: the thread holds the lock.
    fn granted(&mut self, wait: Self::Wait);
}

/// The plain return: never ahead of the line, the plain wait. `take_back_with(away, &mut ())`
/// reclaims the lock, or waits its turn for it.
impl<P: Park> Return<P> for () {
    type Ask = ();
    type Wait = ();

    #[inline]
    fn ahead(&mut self) -> Option<()> {
        None
    }

    #[inline]
    fn in_line(&mut self, _: Option<()>) {}

    #[inline]
    fn granted(&mut self, _: ()) {}
}

/// Runs `f`, a step in which the calling thread is half-way through the protocol (its waiter
/// queued, its lock lent, its ask for a loan standing) and calls the caller's policy: unwinding
/// out of it would free a queued node with the queue still linking to it, or let a thread go on
/// whose lock is elsewhere. So unwinding from `f` aborts the process instead (a panic in a
/// destructor during unwinding), with a message.
pub(crate) fn abort_on_unwind<R>(f: impl FnOnce() -> R) -> R {
    /// Dropped only by unwinding: the normal path forgets it.
    struct HalfWay;

    impl Drop for HalfWay {
        fn drop(&mut self) {
            panic!(
                "gil-core: a waiting policy panicked half-way through a wait, a loan or an ask; \
                 the lock cannot be left so, and the process aborts"
            );
        }
    }

    let half_way = HalfWay;
    let result = f();
    core::mem::forget(half_way);
    result
}

//! The one place gil-std chooses between the real thing and loom, as tokio's `loom` module
//! does: everything else names what this module gives, and runs the same code either way.
//!
//! Under `--cfg loom`: waiters park with loom's park/unpark instead of a futex; thread-locals
//! are loom's (loom runs every model thread on one OS thread); staying awake is one yield; and
//! the clock thread is off ([`CLOCK`]), since only loom's threads may touch loom's atomics.
//! Timed preemption is therefore not modelled; timeouts are, with deadlines that have already
//! passed.

#[cfg(not(loom))]
mod futex;

#[cfg(loom)]
use gil_core::{AtomicU32, Park};
use gil_core::{RawGil, Waiter};

#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    atomic::{AtomicBool, AtomicPtr},
    mpsc::Receiver,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    atomic::{AtomicBool, AtomicPtr},
    mpsc::Receiver,
};

#[cfg(not(loom))]
use atomic_waker::AtomicWaker;
/// A task's waker, registered by the task and woken by whoever grants it the lock.
#[cfg(loom)]
use loom::future::AtomicWaker;

/// What a waiter node of a `Gil` carries for its waker ([`Parking`]'s per-waiter data): for a
/// thread, nothing (a futex waiter sleeps on the node's own word; loom's, its loom thread);
/// for a future waiting in line ([`Gil::acquire_async`](crate::Gil::acquire_async)), the slot
/// its task's waker goes in ([`TaskSlot`]), in the node itself.
///
/// `!Unpin`, as the node is: a granter may still be counting its wake out of the slot while the
/// node drops, and the `&mut` that the slot's drop takes must not claim it alone before the
/// drop has waited that wake out (Rust's aliasing rules do not make a `&mut` to an `!Unpin`
/// value unique).
#[derive(Debug)]
pub struct ParkSlot {
    task: Option<TaskSlot>,
    #[cfg(loom)]
    thread: Option<loom::thread::Thread>,
    _pinned: core::marker::PhantomPinned,
}

/// A future's waker slot. The task registers its waker at each poll that waits; whoever wakes
/// the waiter takes out the waker registered last, after the waiter's word changed, so a
/// registration between the change and the wake is not missed. That wake comes after the
/// queue lock is released, when the future may have seen its grant: the node must outlive it,
/// and `wakes` counts the wakes under way, which the node's drop waits out.
#[derive(Debug)]
struct TaskSlot {
    waker: AtomicWaker,
    /// [`Wake`]s made from this slot that have not yet taken the waker out (or been dropped).
    /// Raised under the queue lock while the waiter is queued, before its word changes.
    wakes: gil_core::AtomicU32,
}

impl Drop for ParkSlot {
    /// Waits out the wakes under way, which read the slot: each is past the queue lock, a few
    /// steps from done, and runs none of the executor's code before it lets the slot go.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            // Acquire pairs with the Release decrement in `count_out`: the wake's last read of
            // the slot happens before the node is gone.
            while task.wakes.load(core::sync::atomic::Ordering::Acquire) != 0 {
                #[cfg(loom)]
                loom::thread::yield_now();
                #[cfg(not(loom))]
                std::thread::yield_now();
            }
        }
    }
}

impl ParkSlot {
    /// A thread's.
    #[inline]
    fn thread() -> Self {
        Self {
            task: None,
            #[cfg(loom)]
            thread: Some(loom::thread::current()),
            _pinned: core::marker::PhantomPinned,
        }
    }

    /// A future's, with an empty waker slot.
    pub(crate) fn task() -> Self {
        Self {
            task: Some(TaskSlot {
                waker: AtomicWaker::new(),
                wakes: gil_core::AtomicU32::new(0),
            }),
            #[cfg(loom)]
            thread: None,
            _pinned: core::marker::PhantomPinned,
        }
    }

    /// Puts `waker` in a future's slot (nothing for a thread's).
    pub(crate) fn register(&self, waker: &core::task::Waker) {
        if let Some(task) = &self.task {
            #[cfg(not(loom))]
            task.waker.register(waker);
            #[cfg(loom)]
            task.waker.register_by_ref(waker);
        }
    }

    /// The task's slot, for its unparker, counted as a wake under way. Called under the queue
    /// lock, while the waiter is queued, before its word changes.
    #[inline]
    fn task_slot(&self) -> Option<*const TaskSlot> {
        self.task.as_ref().map(|task| {
            // Relaxed: the node's drop comes after the waiter is out of line, which it learns
            // from a change of its word made under the queue lock after this one (a grant or a
            // close, Release stores), or by taking the queue lock itself (a cancel): either
            // way after this thread releases the queue lock, which publishes the count.
            task.wakes
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            core::ptr::from_ref(task)
        })
    }
}

/// What wakes a waiter of a `Gil`: its thread (a futex wake on the word, or loom's unpark), or
/// the waker its task registered last.
#[derive(Debug)]
pub struct Wake {
    #[cfg(not(loom))]
    word: *const gil_core::AtomicU32,
    #[cfg(loom)]
    thread: Option<loom::thread::Thread>,
    /// The waiter's slot, while the wake is under way (counted in its `wakes`).
    task: Option<*const TaskSlot>,
}

impl Wake {
    /// Wakes the task, if the waiter is one; returns whether it was.
    #[inline]
    fn wake_task(&mut self) -> bool {
        let Some(task) = self.task.take() else {
            return false;
        };
        // SAFETY: counted in `wakes` under the queue lock while the waiter was queued, and
        // counted out only here: the node is alive (`ParkSlot::drop` waits).
        let Some(waker) = (unsafe { let_go(task) }) else {
            return true;
        };
        if CLOCK && crate::owner::is_quiet() {
            // This thread runs no code of the user's now (see `owner::is_quiet`): a waker
            // thread wakes the task.
            crate::clock::hand_off(waker, true);
        } else {
            no_unwind(|| waker.wake());
        }
        true
    }
}

/// Takes the waker registered last out of `task` (if any), then counts this wake out of its
/// `wakes`: from there the node may be gone, and `task` is not read again.
///
/// # Safety
///
/// `task` was counted in its `wakes` (`ParkSlot::task_slot`) and not yet counted out.
unsafe fn let_go(task: *const TaskSlot) -> Option<core::task::Waker> {
    if cfg!(bite = "a-wake-lets-the-slot-go-first") {
        // SAFETY: counted in and not yet out (caller's contract).
        unsafe { count_out(task) };
        // SAFETY: none: the fault point reads the slot after it let it go.
        return take_waker(unsafe { &(*task).waker });
    }
    // SAFETY: counted in and not yet out, so the node is alive (caller's contract).
    let waker = take_waker(unsafe { &(*task).waker });
    // SAFETY: as above; the last access to the node.
    unsafe { count_out(task) };
    waker
}

/// Counts a wake out of `task`'s `wakes`: from there the node may be gone.
///
/// # Safety
///
/// `task` was counted in its `wakes` (`ParkSlot::task_slot`) and not yet counted out.
unsafe fn count_out(task: *const TaskSlot) {
    // Release pairs with the Acquire in `ParkSlot::drop`: what this wake did with the slot is
    // done before the node may go.
    // SAFETY: counted in and not yet out, so the node is alive (caller's contract).
    unsafe { &(*task).wakes }.fetch_sub(1, core::sync::atomic::Ordering::Release);
}

impl Drop for Wake {
    /// A wake not made (the waiter was awake, and sees the change itself) lets the slot go.
    /// The waker stays in the slot, to be dropped with the node, by the future.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // SAFETY: counted in and not yet out (`wake_task` takes `task` before it counts
            // out).
            unsafe { count_out(task) };
        }
    }
}

/// Takes the waker out of a task's slot, if there is one.
fn take_waker(task: &AtomicWaker) -> Option<core::task::Waker> {
    #[cfg(not(loom))]
    return task.take();
    #[cfg(loom)]
    task.take_waker()
}

/// Runs an executor's waker code (its `wake`, its drop) for the core, which calls it in the
/// middle of a hand-over: an unwinding panic there would leave a waiter node queued as its
/// frame is torn down, or the lock marked away for ever. So a panic is reported and the
/// process aborts, as it would for a panic in a destructor during unwinding.
fn no_unwind(f: impl FnOnce()) {
    if caught(f).is_err() {
        report(format_args!(
            "gil: a task's waker panicked while the lock was being handed on; the lock cannot \
             be left half-way, so the process aborts"
        ));
        std::process::abort();
    }
}

/// Runs `f`, code of the user's that must not unwind into the lock's own: a panic is caught,
/// and `Err` says so. Its payload is forgotten, not dropped: a payload whose own drop panics
/// would unwind from here all the same.
pub(crate) fn caught(f: impl FnOnce()) -> Result<(), ()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(std::mem::forget)
}

/// Panics with `message`: a refusal of the lock's own. On a thread that runs no code of the
/// user's at the moment (`owner::is_quiet`, its hold set aside with other guards), the panic
/// hook, which is the user's code, must not run: the panic unwinds without it (a
/// [`Refusal`]), and the region that set the hold aside raises it again, hook and all, once
/// the hold is whole (`EnsureGuard::allow_threads`).
#[track_caller]
pub(crate) fn refusal(message: std::fmt::Arguments<'_>) -> ! {
    if crate::owner::is_quiet() {
        std::panic::resume_unwind(Box::new(Refusal(message.to_string())));
    }
    panic!("{message}");
}

/// The payload of a [`refusal`] made on a quiet thread, raised again once it is not.
pub(crate) struct Refusal(pub(crate) String);

/// Writes `message` on standard error, as `eprintln!` does, but never panics: with standard
/// error closed, the message is lost rather than unwind from the lock's own paths.
pub(crate) fn report(message: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Locks `mutex`, ignoring poison: every critical section of gil-std leaves its data
/// consistent before anything in it can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` with `guard`'s mutex, ignoring poison as [`lock`] does.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How waiters sleep.
#[cfg(not(loom))]
pub(crate) type Parking = futex::FutexPark;
/// How waiters sleep: loom's park/unpark, which loom checks for lost wake-ups.
#[cfg(loom)]
pub(crate) type Parking = LoomPark;

/// A `const fn`, except under loom, whose atomics have no `const` constructors (gil-core's
/// macro).
pub(crate) use gil_core::const_fn_unless_loom as const_fn;

/// A box made on first use, published with one compare-exchange from null, and freed with its
/// owner: where a `Gil` keeps the services it may never use. Lock-free, so that two threads
/// that race to make it each finish (the loser frees its box); written here rather than taken
/// from a crate so that, under loom, its pointer is loom's and the race is explored.
pub(crate) struct LazyBox<T> {
    ptr: AtomicPtr<T>,
    _owns: core::marker::PhantomData<Box<T>>,
}

impl<T> LazyBox<T> {
    const_fn! {
        /// Nothing made yet.
        pub(crate) fn new() -> Self {
            Self {
                ptr: AtomicPtr::new(core::ptr::null_mut()),
                _owns: core::marker::PhantomData,
            }
        }
    }

    /// The box, if it was made.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        // Acquire pairs with the Release of the publishing compare-exchange in `get_or_make`:
        // the box's contents are visible.
        let ptr = self.ptr.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: a non-null pointer was made by `Box::into_raw` in `get_or_make` and is freed
        // only by `drop`, which has `&mut self`.
        unsafe { ptr.as_ref() }
    }

    /// The box, made now with `make` if nobody made it yet.
    #[inline]
    pub(crate) fn get_or_make(&self, make: impl FnOnce() -> T) -> &T {
        match self.get() {
            Some(made) => made,
            None => self.make(make),
        }
    }

    #[cold]
    fn make(&self, make: impl FnOnce() -> T) -> &T {
        use std::sync::atomic::Ordering::{Acquire, Release};
        let fresh = Box::into_raw(Box::new(make()));
        // Release publishes the box's contents to `get`'s Acquire; Acquire on failure pairs
        // with the winner's Release.
        match self
            .ptr
            .compare_exchange(core::ptr::null_mut(), fresh, Release, Acquire)
        {
            // SAFETY: published; freed only by `drop`.
            Ok(_) => unsafe { &*fresh },
            // SAFETY: a fault point; `fresh` is leaked, so the reference stays valid.
            Err(_) if cfg!(bite = "a-lost-race-keeps-its-box") => unsafe { &*fresh },
            Err(won) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: the winner's box, published and freed only by `drop`.
                unsafe { &*won }
            }
        }
    }
}

impl<T> Drop for LazyBox<T> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` orders every other access before this one.
        let ptr = self.ptr.load(std::sync::atomic::Ordering::Relaxed);
        if !ptr.is_null() {
            // SAFETY: made by `Box::into_raw` in `make`, and this is its only free.
            drop(unsafe { Box::from_raw(ptr) });
        }
    }
}

/// The core lock, parking as [`Parking`].
pub(crate) type Raw = RawGil<Parking>;
/// A waiter node of [`Raw`].
pub(crate) type Node = Waiter<Parking>;

// A waiter node is one cache line, a future's with its waker slot too: the thread that hands the
// lock on writes the node's word and its neighbours' links (see `Waiter`).
const _: () = assert!(!REAL_ATOMICS || core::mem::size_of::<Node>() == 64);

/// The futex parking strategy under its public name: the real one, or loom's stand-in under
/// loom (the futex cannot wait on loom's atomics).
#[cfg(loom)]
pub use LoomPark as FutexPark;
/// The futex parking strategy under its public name: the real one, or loom's stand-in under
/// loom (the futex cannot wait on loom's atomics).
#[cfg(not(loom))]
pub use futex::FutexPark;

/// Staying awake until a deadline, for waits expected to end within microseconds: the two
/// sides of a loan, and a timed waiter's last stretch before its deadline. The caller looks
/// at what it waits for between rounds; each round is one spin hint, and every [`SPINS`]th
/// also reads the clock. Under loom, which has no time, the first round is a yield and the
/// second says stop.
#[derive(Debug)]
pub(crate) struct StayAwake {
    #[cfg_attr(loom, allow(dead_code))]
    until: std::time::Instant,
    rounds: u32,
}

impl StayAwake {
    /// Awake until `until`.
    #[inline]
    pub(crate) fn until(until: std::time::Instant) -> Self {
        Self { until, rounds: 0 }
    }

    /// One round of staying awake. Returns whether to go on (the deadline has not passed).
    #[inline]
    pub(crate) fn round(&mut self) -> bool {
        self.rounds = self.rounds.wrapping_add(1);
        #[cfg(not(loom))]
        {
            core::hint::spin_loop();
            self.rounds % futex::SPINS != 0 || std::time::Instant::now() < self.until
        }
        #[cfg(loom)]
        {
            if self.rounds > 1 {
                return false;
            }
            loom::thread::yield_now();
            true
        }
    }
}

/// Whether the atomics are the hardware's, laid out as they ship (loom's stand-ins are larger).
pub(crate) const REAL_ATOMICS: bool = !cfg!(loom);

/// Whether the `Blocking` helpers wait in timed rounds while deadlock detection is on: not
/// under loom, which has no time (its models find deadlocks themselves).
pub(crate) const POLLED_WAITS: bool = !cfg!(loom);

/// Whether the clock thread (timed preemption, timeout wake-ups) and the waker threads run:
/// not under loom, where only loom's threads may touch loom's atomics. A model looks with the
/// clock itself ([`model_time::clock_look`]).
pub(crate) const CLOCK: bool = !cfg!(loom);

/// Whether waits are counted and locks listed for the clock's looks: always, but under loom
/// only once a model started its clock ([`model_time::start_clock`]), so that the other
/// models explore no listing.
#[inline]
pub(crate) fn timing() -> bool {
    #[cfg(not(loom))]
    return true;
    #[cfg(loom)]
    model_time::MODEL
        .clock_on
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Now: the real clock's, or under loom the model's, which stands still until the model moves
/// it ([`model_time::advance`]), so that an execution does not depend on the real time it
/// takes.
#[inline]
pub(crate) fn now() -> std::time::Instant {
    #[cfg(not(loom))]
    return std::time::Instant::now();
    #[cfg(loom)]
    model_time::now()
}

/// Time in a loom model, in place of the real clock (`--cfg loom` only): a model moves it
/// forward and has the clock look at the locks it lists, so that the policies that read the
/// time (the fast return's credit, the end of a slice, the clock's drop requests) run as they
/// ship, at the moments the model chooses. Each execution starts at the same instant, with
/// the clock stopped.
///
/// ```ignore
/// loom::model(|| {
///     gil_std::model_time::start_clock();
///     // ... a waiter queues: the clock lists the lock ...
///     gil_std::model_time::advance(gil.switch_interval() * 2);
///     gil_std::model_time::clock_look(); // the holder is asked to hand over
/// });
/// ```
#[cfg(loom)]
pub mod model_time {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::time::{Duration, Instant};

    /// One execution's time: std's atomics, since only the model's own calls change them and
    /// loom runs one thread at a time.
    pub(super) struct Model {
        nanos: AtomicU64,
        pub(super) clock_on: AtomicBool,
    }

    loom::lazy_static! {
        pub(super) static ref MODEL: Model = Model {
            nanos: AtomicU64::new(0),
            clock_on: AtomicBool::new(false),
        };
    }

    /// The model's now: the clock's epoch, plus the time the model moved it forward.
    pub(crate) fn now() -> Instant {
        crate::clock::epoch() + Duration::from_nanos(MODEL.nanos.load(Relaxed))
    }

    /// Moves the model's time forward by `by`.
    pub fn advance(by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        MODEL.nanos.fetch_add(by, Relaxed);
    }

    /// From now on in this execution, waits are counted and locks listed for the clock, as
    /// they are outside loom: a thread that queues lists its lock, and the holder times its
    /// slice at its checkpoints.
    pub fn start_clock() {
        MODEL.clock_on.store(true, Relaxed);
    }

    /// Whether the clock lists `gil`: a thread waits for it in line, counted in. Takes the
    /// clock's mutex, as the listing did, so what the listing set (the holder's
    /// `SLICE_TIMER`) is seen by the caller's thread from here.
    pub fn lists(gil: &crate::Gil) -> bool {
        crate::clock::is_listed(&gil.timer)
    }

    /// One look of the clock at the locks it lists, at the model's now: the clock thread's
    /// work, done by the calling thread (there is no clock thread under loom). A lock whose
    /// waiter has waited a whole switch interval with nobody handed the lock gets a drop
    /// request.
    pub fn clock_look() {
        crate::clock::clock().look_now();
    }
}

/// Whether a waiter with a deadline sleeps with a timeout of its own (a futex wait with a
/// timeout, on Linux; a plain park under loom, whose deadlines have passed before the wait
/// begins), instead of being woken by the clock at its deadline.
pub(crate) const OWN_TIMEOUT: bool = cfg!(any(target_os = "linux", loom));

/// Sleeps like `Parking::park` while `node` is queued, but not past `at` where the waiter
/// has a timeout of its own ([`OWN_TIMEOUT`]); elsewhere a plain park, which the clock ends.
#[allow(unused_variables)]
pub(crate) fn park_until(node: core::pin::Pin<&Node>, at: std::time::Instant) {
    #[cfg(all(target_os = "linux", not(loom)))]
    futex::park_until(node.word(), at);
    #[cfg(any(not(target_os = "linux"), loom))]
    <Parking as gil_core::Park>::park(node.parker(), node.word());
}

/// Yields the CPU while `still` holds, for up to `grace`: a waiter letting a thread it may have
/// preempted run on. Under loom, which has no time, nothing.
#[allow(unused_variables)]
pub(crate) fn yield_while(grace: std::time::Duration, still: impl Fn() -> bool) {
    #[cfg(not(loom))]
    {
        let until = std::time::Instant::now() + grace;
        while still() && std::time::Instant::now() < until {
            std::thread::yield_now();
        }
    }
}

/// Declares thread-locals: std's, or loom's under loom, which runs every model thread on one OS
/// thread. `const` before the initialiser asks for std's const initialisation (loom has none).
macro_rules! thread_locals {
    ($(static $name:ident: $t:ty = const $init:block;)*) => {
        $(
            #[cfg(not(loom))]
            std::thread_local!(static $name: $t = const $init);
            #[cfg(loom)]
            loom::thread_local!(static $name: $t = $init);
        )*
    };
    ($(static $name:ident: $t:ty = $init:expr;)*) => {
        $(
            #[cfg(not(loom))]
            std::thread_local!(static $name: $t = $init);
            #[cfg(loom)]
            loom::thread_local!(static $name: $t = $init);
        )*
    };
}

/// A token for the calling thread: the address of a thread-local, unique among live threads
/// and never 0.
#[inline]
pub(crate) fn thread_token() -> usize {
    thread_locals! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| core::ptr::from_ref(t) as usize)
}

/// Parking for loom models.
#[cfg(loom)]
#[derive(Debug)]
pub struct LoomPark;

#[cfg(loom)]
impl Park for LoomPark {
    type Parker = ParkSlot;
    type Unparker = Wake;

    fn parker() -> ParkSlot {
        ParkSlot::thread()
    }
    fn unparker(parker: &ParkSlot, _: &AtomicU32) -> Wake {
        Wake {
            thread: parker.thread.clone(),
            task: parker.task_slot(),
        }
    }
    fn park(_: &ParkSlot, word: &AtomicU32) {
        if gil_core::mark_asleep(word) {
            loom::thread::park();
        }
    }
    fn unpark(mut unparker: Wake) {
        if !unparker.wake_task() {
            if let Some(thread) = &unparker.thread {
                thread.unpark();
            }
        }
    }

    /// A futex, for a lender waiting for its loan back: the look at the word and the sign-up
    /// to be woken happen under one mutex, which the wake takes too, so a give-back between
    /// the lender's look and its sleep is not lost (loom's unpark before park makes the park
    /// return). One sleeper slot: a loom model has one lender at a time.
    fn park_word(word: &AtomicU32, value: u32) {
        use core::sync::atomic::Ordering::Relaxed;
        let mut sleeper = crate::sync::lock(&LOAN_SLEEPER);
        // Relaxed: as the kernel's look; the core rereads the word with Acquire.
        if word.load(Relaxed) != value {
            return;
        }
        *sleeper = Some(loom::thread::current());
        drop(sleeper);
        loom::thread::park();
    }

    fn unpark_word(_: &AtomicU32) {
        if let Some(sleeper) = crate::sync::lock(&LOAN_SLEEPER).take() {
            sleeper.unpark();
        }
    }
}

#[cfg(loom)]
loom::lazy_static! {
    /// The lender asleep in `LoomPark::park_word`.
    static ref LOAN_SLEEPER: Mutex<Option<loom::thread::Thread>> = Mutex::new(None);
}

/// Items the loom models do not build: those that need `const` construction of a `Gil`
/// (`lock_api` asks for it; loom's atomics are not `const`), and the timeline recorder, which
/// only consumers of the finished lock use.
macro_rules! not_modelled {
    ($($item:item)*) => {
        $(
            #[cfg(not(loom))]
            $item
        )*
    };
}

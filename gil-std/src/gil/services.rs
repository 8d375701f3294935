//! What a `Gil` keeps for the services a runtime may use, apart from the lock: made on first
//! use (`Gil::services_or_new`), so that a lock whose runtime uses none of them carries a
//! pointer to nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::runtime::{BreakerHandler, EventHook, PendingCall};
use crate::calls::Calls;
use crate::clock::TaskWatch;
use crate::deadlock::Waits;
use crate::handlers::Handlers;
use crate::hooks::Hook;

/// The services' state: made by the first call that needs one of them.
///
/// - `hook`: [`Gil::set_event_hook`](crate::Gil::set_event_hook) with a hook;
/// - `calls`: [`Gil::add_pending_call`](crate::Gil::add_pending_call), and `close` (so that a
///   call added while the lock closes is refused, not left unrun);
/// - `handlers`: [`Gil::set_breaker_handler`](crate::Gil::set_breaker_handler);
/// - `waits`: [`Gil::set_deadlock_detection`](crate::Gil::set_deadlock_detection) and
///   [`Gil::register_thread`](crate::Gil::register_thread);
/// - `counters`: the first count (a wait that was contended, a loan, a forced drop) and
///   [`Gil::set_hold_timing`](crate::Gil::set_hold_timing);
/// - `tasks`: the first future that waits in line
///   ([`Gil::acquire_async`](crate::Gil::acquire_async)).
///
/// Never made on the clock thread, nor by the core: only by the calls above, on their own
/// thread.
pub(crate) struct Services {
    pub(crate) hook: Hook<EventHook>,
    pub(crate) calls: Calls<PendingCall>,
    pub(crate) handlers: Handlers<BreakerHandler>,
    pub(crate) waits: Waits,
    pub(crate) counters: Counters,
    pub(crate) tasks: Arc<TaskWatch>,
}

impl Services {
    pub(crate) fn new() -> Self {
        Self {
            hook: Hook::new(),
            calls: Calls::new(),
            handlers: Handlers::new(),
            waits: Waits::new(),
            counters: Counters::new(),
            tasks: Arc::default(),
        }
    }
}

/// Figures gathered on the slow paths only; the uncontended path counts nothing.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) forced_drops: AtomicU64,
    /// The figures counted at every handoff, by both threads of it, spread over cache lines by
    /// thread: two threads passing the lock back and forth (a loan, W3) would otherwise also
    /// pass these counters' line at each handoff, a cross-core trip each on the way. A sum of
    /// the stripes is exact; it may just be a moment old.
    stripes: [Stripe; STRIPES],
    /// When timing was last switched on: a hold that began earlier is not counted.
    pub(crate) timing_since: AtomicU64,
    /// When the current hold began (timing on). Written and read by the holder only.
    pub(crate) held_since: AtomicU64,
    pub(crate) hold_nanos: AtomicU64,
}

/// Stripes of [`Counters`]: threads take them in turn as they first count, so up to `STRIPES`
/// threads count without sharing a line.
const STRIPES: usize = 8;

/// One stripe: a cache line of its own (128 bytes: two 64-byte lines, which adjacent-line
/// prefetching on x86 fetches together).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Stripe {
    pub(crate) loans: AtomicU64,
    pub(crate) contended: AtomicU64,
    pub(crate) wait_nanos: AtomicU64,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Self {
            forced_drops: AtomicU64::new(0),
            stripes: [const {
                Stripe {
                    loans: AtomicU64::new(0),
                    contended: AtomicU64::new(0),
                    wait_nanos: AtomicU64::new(0),
                }
            }; STRIPES],
            timing_since: AtomicU64::new(0),
            held_since: AtomicU64::new(0),
            hold_nanos: AtomicU64::new(0),
        }
    }

    /// The calling thread's stripe.
    fn stripe(&self) -> &Stripe {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::thread_local!(static MINE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES);
        &self.stripes[MINE.with(|s| *s)]
    }

    /// Counts a loan, as it is made (by the lender, as it waits for the loan back).
    pub(crate) fn count_loan(&self) {
        self.stripe().loans.fetch_add(1, Relaxed);
    }

    /// Counts an acquisition that waited `nanos`.
    pub(crate) fn count_wait(&self, nanos: u64) {
        let stripe = self.stripe();
        stripe.contended.fetch_add(1, Relaxed);
        stripe.wait_nanos.fetch_add(nanos, Relaxed);
    }

    /// The sum over the stripes of one figure.
    pub(crate) fn sum(&self, figure: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .fold(0, |sum, s| sum.wrapping_add(figure(s).load(Relaxed)))
    }
}

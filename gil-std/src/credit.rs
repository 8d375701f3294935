//! The fast-return policy: who may come back from a blocking region ahead of the line.
//!
//! A thread earns credit while it is blocked, at its fair share of that time (the time divided
//! by the threads contending for the lock, itself included), and spends it while it holds the
//! lock out of turn. A thread with credit left asks for a loan on the breaker: the holder's next
//! checkpoint lends it the lock and gets it back as soon as it blocks again. Unanswered while
//! it stays awake, it withdraws its ask and waits its turn. A thread that blocks briefly and computes long (the
//! abuse case) spends more than it earns and comes back in FIFO order. See docs/design.md,
//! "Fast return from blocking".
//!
//! Credit is kept per thread, not per lock: a thread that uses several locks shares one
//! balance among them.

use std::cell::Cell;
use std::time::Duration;

/// The most credit a thread can hold, as a fraction of the switch interval: the longest it can
/// hold out of turn at one go before it runs dry (1/4).
pub(crate) const CAP_DIVISOR: u64 = 4;

/// A thread's credit: the arithmetic of the fast-return rule, apart from the thread-local that
/// keeps it (so the property test below can drive it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Credit {
    /// Nanoseconds of out-of-turn holding earned and not yet spent; negative: in debt.
    balance: i64,
    /// When the current blocking region began (nanoseconds on the clock's epoch); 0: not in one.
    since: u64,
}

impl Credit {
    const fn new() -> Self {
        Self {
            balance: 0,
            since: 0,
        }
    }

    /// The most credit a thread can hold, for switch interval `interval`.
    pub(crate) fn cap(interval: Duration) -> i64 {
        i64::try_from(interval.as_nanos() as u64 / CAP_DIVISOR).unwrap_or(i64::MAX)
    }

    fn enter_region(&mut self, now: u64) {
        self.since = now;
    }

    fn forget_region(&mut self) {
        self.since = 0;
    }

    /// Earns the share of the time blocked since `enter_region`, up to the cap; returns whether
    /// the balance is positive (ask for a loan).
    pub(crate) fn leave_region(&mut self, now: u64, contending: u64, interval: Duration) -> bool {
        let blocked = now.saturating_sub(core::mem::replace(&mut self.since, 0));
        if cfg!(bite = "credit-never-earned") {
            return false;
        }
        if cfg!(bite = "credit-without-blocking") {
            return true;
        }
        let earned = blocked / contending.max(1);
        self.balance = self
            .balance
            .saturating_add(i64::try_from(earned).unwrap_or(i64::MAX))
            .min(Self::cap(interval));
        self.balance > 0
    }

    /// Spends `held` nanoseconds held out of turn. The debt is kept down to one switch interval,
    /// so a thread that once abused can earn its way back.
    pub(crate) fn spend(&mut self, held: u64, interval: Duration) {
        let floor = -i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        self.balance = self
            .balance
            .saturating_sub(i64::try_from(held).unwrap_or(i64::MAX))
            .max(floor);
    }
}

// This thread's credit, kept per thread (see the module's docs).
thread_locals! {
    static CREDIT: Cell<Credit> = const { Cell::new(Credit::new()) };
}

/// Runs `f` on this thread's credit (nothing while the thread-local is being destroyed).
fn with<R: Default>(f: impl FnOnce(&mut Credit) -> R) -> R {
    CREDIT
        .try_with(|cell| {
            let mut credit = cell.get();
            let out = f(&mut credit);
            cell.set(credit);
            out
        })
        .unwrap_or_default()
}

/// The thread spends `held` nanoseconds held out of turn (a loan that ended).
pub(crate) fn spend(held: u64, interval: Duration) {
    with(|c| c.spend(held, interval));
}

/// The thread enters a blocking region at `now`.
pub(crate) fn enter_region(now: u64) {
    with(|c| c.enter_region(now));
}

/// The thread leaves its blocking region without having let the lock go: nothing earned.
pub(crate) fn forget_region() {
    with(Credit::forget_region);
}

/// The thread leaves its blocking region at `now`, with `contending` threads (itself included)
/// wanting the lock: earns its share of the time blocked, up to the cap. Returns whether it has
/// credit to ask for a loan.
pub(crate) fn leave_region(now: u64, contending: u64, interval: Duration) -> bool {
    with(|c| c.leave_region(now, contending, interval))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Gil;

    /// One blocking region in a thread's life, and the loan after it if the thread came back
    /// by asking for a loan.
    #[derive(Clone, Debug)]
    struct Region {
        /// Time blocked, in thousandths of the interval (up to four intervals).
        blocked: u64,
        /// Threads contending when it came back, itself included.
        contending: u64,
        /// Whether another thread took the lock meanwhile (else the region was reclaimed).
        taken: bool,
        /// How long a loan lasts, in thousandths of the interval: a loan ends at the borrower's
        /// next blocking region or at the end of the lender's slice, so within one interval.
        loan: u64,
    }

    fn region() -> impl Strategy<Value = Region> {
        (0..=4000u64, 1..=17u64, any::<bool>(), 0..=1000u64).prop_map(
            |(blocked, contending, taken, loan)| Region {
                blocked,
                contending,
                taken,
                loan,
            },
        )
    }

    /// Waits until `done`, failing the test after a minute.
    fn until(mut done: impl FnMut() -> bool) {
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(std::time::Instant::now() < give_up, "gave up waiting");
            std::thread::yield_now();
        }
    }

    /// A thread back from a region in which another thread took the lock earns its share of
    /// the time blocked: here half, shared with the one holder (nobody else waits).
    #[test]
    fn a_thread_earns_its_share_of_a_region() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::thread;
        use std::time::Instant;

        let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
        gil.set_fast_return(true);
        let took = AtomicBool::new(false);
        let back = AtomicBool::new(false);
        let handed = AtomicBool::new(false);
        thread::scope(|s| {
            // A thread of its own: credit is per thread.
            s.spawn(|| {
                let mut g = gil.acquire();
                s.spawn(|| {
                    let mut h = gil.acquire(); // queued behind `g`
                    took.store(true, SeqCst);
                    until(|| {
                        h.checkpoint().unwrap(); // lends here
                        if !back.load(SeqCst) && gil.has_waiters() {
                            // The ask came while this thread was not running (the tests run
                            // side by side): the other thread waits its turn; it tries again.
                            handed.store(true, SeqCst);
                            took.store(false, SeqCst);
                            assert!(h.hand_over());
                            took.store(true, SeqCst);
                        }
                        back.load(SeqCst)
                    });
                });
                until(|| gil.has_waiters());
                // Every try's region counts: it earns, and a return in line spends nothing.
                let start = Instant::now();
                loop {
                    g.allow_threads(|| {
                        until(|| took.load(SeqCst) && !gil.has_waiters());
                        thread::sleep(Duration::from_millis(2));
                    });
                    if !handed.swap(false, SeqCst) {
                        break;
                    }
                }
                let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap();
                // On loan now: spent only when the loan ends.
                let balance = with(|c| c.balance);
                back.store(true, SeqCst);
                drop(g);
                assert!(balance > 0, "earned nothing");
                assert!(
                    balance.unsigned_abs() <= elapsed / 2,
                    "earned {balance} ns of a region of at most {elapsed} ns"
                );
            });
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The bypass bound of docs/design.md ("Fast return from blocking"): over any run of
        /// consecutive regions, a thread holds out of turn at most the cap, plus its fair share
        /// of the time it was blocked in regions where another thread took the lock, plus the
        /// one loan that overdraws its balance. And the balance never exceeds the cap.
        #[test]
        fn out_of_turn_holding_stays_within_the_fair_share(
            interval in prop::sample::select(vec![
                Gil::MIN_SWITCH_INTERVAL,
                Duration::from_millis(1),
                Gil::DEFAULT_SWITCH_INTERVAL,
                Duration::from_secs(1),
            ]),
            regions in prop::collection::vec(region(), 1..60),
        ) {
            let unit = interval.as_nanos() as u64 / 1000;
            let cap = Credit::cap(interval);
            let mut credit = Credit::new();
            let mut now = 1;
            // Per region: the fair share earned, and the time then held out of turn.
            let mut shares = Vec::new();
            let mut held = Vec::new();
            for r in &regions {
                credit.enter_region(now);
                now += r.blocked * unit;
                let borrowing = if r.taken {
                    credit.leave_region(now, r.contending, interval)
                } else {
                    credit.forget_region();
                    false
                };
                prop_assert!(credit.balance <= cap, "over the cap: {credit:?}");
                shares.push(if r.taken { r.blocked * unit / r.contending } else { 0 });
                if borrowing {
                    credit.spend(r.loan * unit, interval);
                    now += r.loan * unit;
                    held.push(r.loan * unit);
                } else {
                    held.push(0);
                }
            }
            for from in 0..regions.len() {
                let (mut out_of_turn, mut share, mut longest) = (0u64, 0u64, 0u64);
                for to in from..regions.len() {
                    out_of_turn += held[to];
                    share += shares[to];
                    longest = longest.max(held[to]);
                    prop_assert!(
                        out_of_turn <= cap as u64 + share + longest,
                        "regions {from}..={to}: held out of turn {out_of_turn} ns, cap {cap}, \
                         share {share}, longest loan {longest}"
                    );
                }
            }
        }
    }
}

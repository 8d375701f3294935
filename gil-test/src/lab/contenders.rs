//! The locks the lab compares, behind one interface: a thread takes the lock, does units of
//! work with a checkpoint between them, and releases it around blocking calls.
//!
//! Peers have no drop requests, so each does what a user of that lock would write instead:
//! retake (or `bump()`) the lock once it has been held a whole switch interval, checked every
//! [`CHECK_EVERY`] checkpoints (a clock read costs ~20 ns, twice a unit of work), or
//! `bump()` at every checkpoint.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gil_std::{Gil, GilGuard};

/// How many checkpoints a time-sliced peer lets pass between clock reads.
pub const CHECK_EVERY: u32 = 64;

/// A lock under test.
pub trait Contender: Sync {
    /// What a thread holds.
    type Held<'a>: Held
    where
        Self: 'a;
    /// Takes the lock.
    fn acquire(&self) -> Self::Held<'_>;
}

/// A held lock; dropping it releases.
pub trait Held {
    /// Between units of work: gives the lock up if the lock's policy says so.
    fn checkpoint(&mut self);
    /// Runs `f` with the lock released, and takes it back.
    fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R;
}

/// The contenders, by name; see [`with_contender`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `gil_std::Gil`.
    Gil,
    /// `gil_std::Gil` with the fast return from blocking regions switched off: strict FIFO.
    GilStrict,
    /// No lock at all: the baseline.
    NoLock,
    /// std `Mutex`, released and retaken once held an interval.
    StdMutex,
    /// parking_lot `Mutex`, `bump()` once held an interval.
    ParkingLotInterval,
    /// parking_lot `Mutex`, `bump()` at every checkpoint.
    ParkingLotEvery,
    /// spin's `TicketMutex`, released and retaken once held an interval.
    SpinTicket,
}

impl Kind {
    /// The peers and gil, in table order.
    pub const LOCKS: [Kind; 6] = [
        Kind::Gil,
        Kind::GilStrict,
        Kind::StdMutex,
        Kind::ParkingLotInterval,
        Kind::ParkingLotEvery,
        Kind::SpinTicket,
    ];

    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gil => "gil",
            Kind::GilStrict => "gil, fast return off",
            Kind::NoLock => "no lock",
            Kind::StdMutex => "std Mutex, retake/interval",
            Kind::ParkingLotInterval => "parking_lot, bump/interval",
            Kind::ParkingLotEvery => "parking_lot, bump/checkpoint",
            Kind::SpinTicket => "spin Ticket, retake/interval",
        }
    }

    /// A short key for JSON.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Gil => "gil",
            Kind::GilStrict => "gil_fast_return_off",
            Kind::NoLock => "no_lock",
            Kind::StdMutex => "std_mutex_interval",
            Kind::ParkingLotInterval => "parking_lot_bump_interval",
            Kind::ParkingLotEvery => "parking_lot_bump_every",
            Kind::SpinTicket => "spin_ticket_interval",
        }
    }
}

/// Something to run with a contender of any type: what [`with_contender`] calls.
pub trait Visit {
    /// The result.
    type Out;
    /// Runs with `lock`.
    fn visit<C: Contender>(self, lock: &C) -> Self::Out;
}

/// Builds a fresh contender of `kind` with switch interval `interval` and runs `v` with it.
pub fn with_contender<V: Visit>(kind: Kind, interval: Duration, v: V) -> V::Out {
    match kind {
        Kind::Gil => v.visit(&Gil::with_switch_interval(interval)),
        Kind::GilStrict => {
            let gil = Gil::with_switch_interval(interval);
            gil.set_fast_return(false);
            v.visit(&gil)
        }
        Kind::NoLock => v.visit(&NoLock),
        Kind::StdMutex => v.visit(&Sliced::new(Mutex::new(()), interval)),
        Kind::ParkingLotInterval => v.visit(&Sliced::new(parking_lot::Mutex::new(()), interval)),
        Kind::ParkingLotEvery => v.visit(&BumpEvery(parking_lot::Mutex::new(()))),
        Kind::SpinTicket => v.visit(&Sliced::new(spin::mutex::TicketMutex::new(()), interval)),
    }
}

impl Contender for Gil {
    type Held<'a> = GilGuard<'a>;
    fn acquire(&self) -> GilGuard<'_> {
        Gil::acquire(self)
    }
}

impl Held for GilGuard<'_> {
    #[inline]
    fn checkpoint(&mut self) {
        GilGuard::checkpoint(self).expect("nobody interrupts the lab's threads");
    }
    fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.allow_threads(f)
    }
}

/// No lock: what the workloads do with nothing to share.
pub struct NoLock;

impl Contender for NoLock {
    type Held<'a> = NoLock;
    fn acquire(&self) -> NoLock {
        NoLock
    }
}

impl Held for NoLock {
    #[inline]
    fn checkpoint(&mut self) {}
    fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// A plain mutex, as the time-sliced peers use it.
pub trait PlainMutex: Sync {
    /// Its guard.
    type Guard<'a>
    where
        Self: 'a;
    /// Locks.
    fn lock(&self) -> Self::Guard<'_>;
    /// Gives the lock up and takes it again; parking_lot's `bump` is fair (hands over to a
    /// parked waiter), the others unlock and lock.
    fn retake<'a>(&'a self, guard: &mut Option<Self::Guard<'a>>) {
        *guard = None;
        *guard = Some(self.lock());
    }
}

impl PlainMutex for Mutex<()> {
    type Guard<'a> = MutexGuard<'a, ()>;
    fn lock(&self) -> Self::Guard<'_> {
        Mutex::lock(self).unwrap_or_else(|p| p.into_inner())
    }
}

impl PlainMutex for parking_lot::Mutex<()> {
    type Guard<'a> = parking_lot::MutexGuard<'a, ()>;
    fn lock(&self) -> Self::Guard<'_> {
        parking_lot::Mutex::lock(self)
    }
    fn retake<'a>(&'a self, guard: &mut Option<Self::Guard<'a>>) {
        if let Some(g) = guard {
            parking_lot::MutexGuard::bump(g);
        }
    }
}

impl PlainMutex for spin::mutex::TicketMutex<()> {
    type Guard<'a> = spin::mutex::TicketMutexGuard<'a, ()>;
    fn lock(&self) -> Self::Guard<'_> {
        spin::mutex::TicketMutex::lock(self)
    }
}

/// A plain mutex retaken (or bumped) once held a whole interval.
pub struct Sliced<M> {
    mutex: M,
    interval: Duration,
}

impl<M> Sliced<M> {
    fn new(mutex: M, interval: Duration) -> Self {
        Self { mutex, interval }
    }
}

/// A held [`Sliced`].
pub struct SlicedHeld<'a, M: PlainMutex> {
    lock: &'a Sliced<M>,
    guard: Option<M::Guard<'a>>,
    since: Instant,
    count: u32,
}

impl<M: PlainMutex> Contender for Sliced<M> {
    type Held<'a>
        = SlicedHeld<'a, M>
    where
        M: 'a;
    fn acquire(&self) -> SlicedHeld<'_, M> {
        let guard = Some(self.mutex.lock());
        SlicedHeld {
            lock: self,
            guard,
            since: Instant::now(),
            count: 0,
        }
    }
}

impl<M: PlainMutex> Held for SlicedHeld<'_, M> {
    #[inline]
    fn checkpoint(&mut self) {
        self.count = self.count.wrapping_add(1);
        if self.count.is_multiple_of(CHECK_EVERY) && self.since.elapsed() >= self.lock.interval {
            self.lock.mutex.retake(&mut self.guard);
            self.since = Instant::now();
        }
    }
    fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.guard = None;
        let r = f();
        self.guard = Some(self.lock.mutex.lock());
        self.since = Instant::now();
        r
    }
}

/// parking_lot with `bump()` at every checkpoint.
pub struct BumpEvery(parking_lot::Mutex<()>);

impl Contender for BumpEvery {
    type Held<'a> = parking_lot::MutexGuard<'a, ()>;
    fn acquire(&self) -> Self::Held<'_> {
        self.0.lock()
    }
}

impl Held for parking_lot::MutexGuard<'_, ()> {
    #[inline]
    fn checkpoint(&mut self) {
        parking_lot::MutexGuard::bump(self);
    }
    fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        parking_lot::MutexGuard::unlocked(self, f)
    }
}

/// One unit of CPU work, about 10 ns: a few rounds of a xorshift generator on `state`.
#[inline]
pub fn unit(state: &mut u64) {
    let mut x = *state;
    for _ in 0..6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    *state = std::hint::black_box(x);
}

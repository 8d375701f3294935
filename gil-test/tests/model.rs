//! The real gil-core, driven by random operations of several logical threads in one OS thread,
//! against a reference model (`proptest-state-machine`). After every step the lock word, every
//! waiter's state, the switch count and the breaker flags must match the model's.
//!
//! Shrunk failures are kept by proptest in `model.regressions` beside this file and replayed
//! first (the seeds there came from `scripts/bite.py` mutants: each once broke the core).
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::pin::Pin;

use gil_core::{Breaker, Cancel, Enqueued, RawGil, SpinPark, TryAcquireError, WaitState, Waiter};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// Logical threads.
const THREADS: usize = 4;
/// A runtime flag the model sets and takes.
const FLAG: u32 = Breaker::runtime_bit(0);

/// Where a logical thread stands, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Neither holding nor queued.
    Idle,
    /// Holding, and it knows it.
    Holding,
    /// Queued (on its fresh node, or its returning node if `returning`).
    Queued { returning: bool },
    /// Granted while queued; the thread has not looked yet.
    Granted { returning: bool },
    /// Taken out by close; the thread has not looked yet.
    ClosedOut,
    /// Released the lock for a blocking region; must come back with a returning waiter.
    InRegion,
}

#[derive(Clone, Debug)]
struct Model {
    holder: Option<usize>,
    queue: VecDeque<(usize, bool)>,
    closed: bool,
    breaker: u32,
    switches: u32,
    threads: [Status; THREADS],
}

#[derive(Clone, Debug)]
enum Op {
    TryAcquire(usize),
    Enqueue(usize),
    /// The thread looks at its waiter (a grant or close becomes known).
    Poll(usize),
    Cancel(usize),
    Release(usize),
    Yield(usize),
    Checkpoint(usize),
    RequestDrop,
    SetFlag,
    TakeFlag,
    Close,
    EnterRegion(usize),
    LeaveRegion(usize),
}

impl Model {
    fn queued_status(&self, t: usize) -> Option<bool> {
        match self.threads[t] {
            Status::Queued { returning } => Some(returning),
            _ => None,
        }
    }

    /// The holder lets go: the head waiter, if any, is granted.
    fn hand_on(&mut self) {
        match self.queue.pop_front() {
            Some((h, returning)) => {
                self.holder = Some(h);
                self.threads[h] = Status::Granted { returning };
                self.switches = self.switches.wrapping_add(1);
            }
            None => self.holder = None,
        }
    }

    /// `t` holds: hand to the head and queue `t` behind everybody (returning). False if nobody
    /// waits.
    fn yield_from(&mut self, t: usize) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        self.hand_on();
        self.queue.push_back((t, true));
        self.threads[t] = Status::Queued { returning: true };
        true
    }
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            holder: None,
            queue: VecDeque::new(),
            closed: false,
            breaker: 0,
            switches: 0,
            threads: [Status::Idle; THREADS],
        })
        .boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        let t = 0..THREADS;
        prop_oneof![
            3 => t.clone().prop_map(Op::TryAcquire),
            5 => t.clone().prop_map(Op::Enqueue),
            4 => t.clone().prop_map(Op::Poll),
            2 => t.clone().prop_map(Op::Cancel),
            4 => t.clone().prop_map(Op::Release),
            2 => t.clone().prop_map(Op::Yield),
            3 => t.clone().prop_map(Op::Checkpoint),
            2 => Just(Op::RequestDrop),
            1 => Just(Op::SetFlag),
            1 => Just(Op::TakeFlag),
            1 => Just(Op::Close),
            2 => t.clone().prop_map(Op::EnterRegion),
            2 => t.prop_map(Op::LeaveRegion),
        ]
        .boxed()
    }

    fn preconditions(m: &Model, op: &Op) -> bool {
        use Status::*;
        match *op {
            Op::TryAcquire(t) | Op::Enqueue(t) => m.threads[t] == Idle,
            Op::Poll(t) => matches!(m.threads[t], Granted { .. } | ClosedOut),
            Op::Cancel(t) => {
                matches!(m.threads[t], Queued { .. } | Granted { .. } | ClosedOut)
            }
            Op::Release(t) | Op::Yield(t) | Op::Checkpoint(t) | Op::EnterRegion(t) => {
                m.threads[t] == Holding
            }
            Op::LeaveRegion(t) => m.threads[t] == InRegion,
            Op::RequestDrop | Op::SetFlag | Op::TakeFlag | Op::Close => true,
        }
    }

    fn apply(mut m: Model, op: &Op) -> Model {
        match *op {
            Op::TryAcquire(t) => {
                if !m.closed && m.holder.is_none() && m.queue.is_empty() {
                    m.holder = Some(t);
                    m.threads[t] = Status::Holding;
                }
            }
            Op::Enqueue(t) => {
                if m.closed {
                } else if m.holder.is_none() {
                    m.holder = Some(t);
                    m.threads[t] = Status::Holding;
                } else {
                    m.queue.push_back((t, false));
                    m.threads[t] = Status::Queued { returning: false };
                }
            }
            Op::Poll(t) | Op::Cancel(t) => match m.threads[t] {
                Status::Granted { .. } => m.threads[t] = Status::Holding,
                Status::ClosedOut => m.threads[t] = Status::Idle,
                Status::Queued { returning } => {
                    // Only Cancel gets here (Poll's precondition excludes it).
                    m.queue.retain(|&(w, _)| w != t);
                    m.threads[t] = if returning {
                        Status::InRegion
                    } else {
                        Status::Idle
                    };
                }
                _ => unreachable!(),
            },
            Op::Release(t) => {
                m.threads[t] = Status::Idle;
                m.hand_on();
            }
            Op::Yield(t) => {
                m.yield_from(t);
            }
            Op::Checkpoint(t) => {
                if m.breaker & Breaker::DROP_REQUEST != 0 {
                    m.breaker &= !Breaker::DROP_REQUEST;
                    m.yield_from(t);
                }
            }
            Op::RequestDrop => m.breaker |= Breaker::DROP_REQUEST,
            Op::SetFlag => m.breaker |= FLAG,
            Op::TakeFlag => m.breaker &= !FLAG,
            Op::Close => {
                m.closed = true;
                let (fresh, returning): (Vec<_>, Vec<_>) = m.queue.iter().partition(|w| !w.1);
                for (w, _) in fresh {
                    m.threads[w] = Status::ClosedOut;
                }
                m.queue = returning.into_iter().collect();
            }
            Op::EnterRegion(t) => {
                m.threads[t] = Status::InRegion;
                m.hand_on();
            }
            Op::LeaveRegion(t) => {
                if m.holder.is_none() {
                    m.holder = Some(t);
                    m.threads[t] = Status::Holding;
                } else {
                    m.queue.push_back((t, true));
                    m.threads[t] = Status::Queued { returning: true };
                }
            }
        }
        m
    }
}

type Node = Waiter<SpinPark>;

/// The real lock and, per logical thread, a fresh and a returning waiter node; and the model as
/// it was before the step being applied (the test harness passes only the state after).
struct Real {
    gil: Box<RawGil>,
    fresh: Vec<Pin<Box<Node>>>,
    back: Vec<Pin<Box<Node>>>,
    before: Model,
}

impl Real {
    fn node(&self, t: usize, returning: bool) -> Pin<&Node> {
        if returning {
            self.back[t].as_ref()
        } else {
            self.fresh[t].as_ref()
        }
    }
}

struct GilTest;

impl StateMachineTest for GilTest {
    type SystemUnderTest = Real;
    type Reference = Reference;

    fn init_test(initial: &Model) -> Real {
        Real {
            gil: Box::new(RawGil::new()),
            fresh: (0..THREADS).map(|_| Box::pin(Node::new())).collect(),
            back: (0..THREADS).map(|_| Box::pin(Node::returning())).collect(),
            before: initial.clone(),
        }
    }

    fn apply(mut real: Real, after: &Model, op: Op) -> Real {
        let before = std::mem::replace(&mut real.before, after.clone());
        let gil = &*real.gil;
        // The unsafe calls below rely on the model: its preconditions are their contracts.
        // A thread releases, yields or checkpoints only while it holds; nodes are boxed and
        // pinned for the life of `real` and are never dropped while queued (see `teardown`).
        match op {
            Op::TryAcquire(t) => {
                let got = gil.try_acquire();
                match after.threads[t] {
                    Status::Holding => assert_eq!(got, Ok(())),
                    _ if after.closed => assert_eq!(got, Err(TryAcquireError::Closed)),
                    _ => assert_eq!(got, Err(TryAcquireError::WouldBlock)),
                }
            }
            Op::Enqueue(t) => {
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let got = unsafe { gil.enqueue(real.node(t, false)) };
                let want = match after.threads[t] {
                    Status::Holding => Enqueued::Acquired,
                    Status::Queued { .. } => Enqueued::Queued,
                    _ => Enqueued::Closed,
                };
                assert_eq!(got, want);
            }
            Op::Poll(_) => {} // the node states are compared in `check_invariants`
            Op::Cancel(t) => {
                let (returning, want) = match before.threads[t] {
                    Status::Queued { returning } => (returning, Cancel::Removed),
                    Status::Granted { returning } => (returning, Cancel::Granted),
                    _ => (false, Cancel::Closed), // ClosedOut: only fresh nodes are closed
                };
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let got = unsafe { gil.cancel(real.node(t, returning)) };
                assert_eq!(got, want, "cancel of thread {t}");
            }
            // SAFETY: the preconditions above are the contracts (see the top of `apply`).
            Op::Release(_) | Op::EnterRegion(_) => unsafe { gil.unlock() },
            Op::Yield(t) => {
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let yielded = unsafe { gil.requeue(real.node(t, true)) };
                assert_eq!(yielded, after.queued_status(t).is_some());
            }
            Op::Checkpoint(t) => {
                let pending = gil.breaker().pending();
                if pending & Breaker::DROP_REQUEST != 0 && gil.has_waiters() {
                    // The real checkpoint would wait for the lock to come back, which one OS
                    // thread cannot: drive its two steps instead.
                    assert_ne!(gil.breaker().take(Breaker::DROP_REQUEST), 0);
                    // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                    assert!(unsafe { gil.requeue(real.node(t, true)) });
                } else {
                    // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                    let others = unsafe { gil.checkpoint() };
                    assert_eq!(others, after.breaker & !Breaker::DROP_REQUEST);
                }
            }
            Op::RequestDrop => gil.request_drop(),
            Op::SetFlag => gil.breaker().set(FLAG),
            Op::TakeFlag => {
                gil.breaker().take(FLAG);
            }
            Op::Close => gil.close(),
            Op::LeaveRegion(t) => {
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let got = unsafe { gil.enqueue(real.node(t, true)) };
                let want = match after.threads[t] {
                    Status::Holding => Enqueued::Acquired,
                    _ => Enqueued::Queued,
                };
                assert_eq!(got, want);
            }
        }
        real
    }

    fn check_invariants(real: &Real, m: &Model) {
        let gil = &*real.gil;
        assert_eq!(gil.is_locked(), m.holder.is_some(), "locked, model {m:?}");
        assert_eq!(
            gil.has_waiters(),
            !m.queue.is_empty(),
            "waiters, model {m:?}"
        );
        assert_eq!(gil.is_closed(), m.closed);
        assert_eq!(gil.switches(), m.switches, "switches");
        assert_eq!(gil.breaker().pending(), m.breaker, "breaker");
        for t in 0..THREADS {
            let (fresh, back) = (real.fresh[t].state(), real.back[t].state());
            let on = |returning: bool| if returning { back } else { fresh };
            match m.threads[t] {
                Status::Queued { returning } => {
                    assert_eq!(on(returning), WaitState::Waiting, "thread {t}")
                }
                Status::Granted { returning } => {
                    assert_eq!(on(returning), WaitState::Granted, "thread {t}")
                }
                Status::ClosedOut => assert_eq!(fresh, WaitState::Closed, "thread {t}"),
                // Not queued: neither node may be in the queue. (A node keeps saying Granted or
                // Closed after its thread has acted on it, until it is queued again.)
                _ => {
                    assert_ne!(fresh, WaitState::Waiting, "thread {t} still queued");
                    assert_ne!(back, WaitState::Waiting, "thread {t} still queued");
                }
            }
        }
    }

    fn teardown(real: Real, m: Model) {
        // Take every queued node out before the nodes are dropped.
        for t in 0..THREADS {
            if let Some(returning) = m.queued_status(t) {
                // SAFETY: queued by this test on `real.gil`, not yet acted on.
                let _ = unsafe { real.gil.cancel(real.node(t, returning)) };
            }
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        .. ProptestConfig::default()
    })]

    #[test]
    fn the_core_matches_the_reference_model(sequential 1..80 => GilTest);
}

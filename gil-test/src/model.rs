//! The reference model of gil-core and the real core side by side: one operation language for
//! the property test (`tests/model.rs`), the coverage-guided fuzzer (`fuzz/`, target
//! `core_ops`) and the ordinary test that replays the fuzzer's corpus.
//!
//! Several logical threads act on one real `RawGil` from one OS thread through its poll API
//! (`enqueue`, `cancel`, `requeue`, `Waiter::state`); after every step the lock word, every
//! waiter's state, the switch count and the breaker flags must match the model's.

use std::cell::Cell;
use std::collections::VecDeque;
use std::pin::Pin;

use gil_core::model::{Cancel, Enqueued, Loan, Steps};
use gil_core::{Absence, Breaker, RawGil, SpinPark, TryLockError, WaitState, Waiter};

/// Logical threads.
pub const THREADS: usize = 4;
/// A runtime flag the model sets and takes.
pub const FLAG: u32 = Breaker::runtime_bit(0);
/// The breaker flags a checkpoint acts on itself, not returned to its caller.
const CHECKPOINT_BITS: u32 = Breaker::DROP_REQUEST | Breaker::LOAN_ASKED;

/// Which of its nodes a logical thread is queued on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// `Waiter::new()`: a first acquire.
    Fresh,
    /// `Waiter::returning()`: back from a yield or a region.
    Returning,
}

impl NodeKind {
    /// Whether `close` lets this node through.
    pub fn is_returning(self) -> bool {
        self != NodeKind::Fresh
    }
}

/// Where a logical thread stands, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Neither holding nor queued.
    Idle,
    /// Holding, and it knows it.
    Holding,
    /// Queued, on its node of that kind.
    Queued {
        /// Which node.
        node: NodeKind,
    },
    /// Granted while queued; the thread has not looked yet.
    Granted {
        /// Which node.
        node: NodeKind,
    },
    /// Taken out by close; the thread has not looked yet.
    ClosedOut,
    /// Released the lock for a blocking region; must come back with a returning waiter.
    InRegion,
    /// Let the lock go lazily for a blocking region (`unlock_away`); must try `reclaim` first.
    Absence,
    /// Back from a region, asked for a loan (`ask_loan`), not yet answered.
    Asking,
    /// Lent the lock it asked for; the thread has not looked yet.
    Lent,
    /// Holds the lock on a loan it asked for, and knows it: lets go only with `give_back`.
    Borrowing,
    /// Lent the lock at a checkpoint and waits for it back.
    Lending,
}

/// The reference model: what the lock must look like.
#[derive(Clone, Debug)]
pub struct Model {
    /// The logical thread that holds the lock.
    pub holder: Option<usize>,
    /// The waiter offered the lock while its owner is away (always the head of the queue).
    pub offered: Option<usize>,
    /// The thread whose absence the offer is: the only one whose `reclaim` may succeed.
    pub away_owner: Option<usize>,
    /// The waiters, in line order, each with the node it is queued on.
    pub queue: VecDeque<(usize, NodeKind)>,
    /// Whether `close` was called.
    pub closed: bool,
    /// The breaker flags set.
    pub breaker: u32,
    /// Handoffs so far.
    pub switches: u32,
    /// Where each logical thread stands.
    pub threads: [Status; THREADS],
    /// The thread whose ask for a loan stands (`LOAN_ASKED` is pending).
    pub asker: Option<usize>,
    /// The thread that lent the lock it was asked for, while the loan is out (the borrower is
    /// `holder`).
    pub lender: Option<usize>,
}

/// One operation, by a logical thread where it takes one.
#[derive(Clone, Debug)]
pub enum Op {
    /// `try_lock`.
    TryAcquire(usize),
    /// `enqueue` of the thread's fresh node.
    Enqueue(usize),
    /// The thread looks at its waiter (a grant or close becomes known).
    Poll(usize),
    /// `cancel` of the thread's queued (or granted, or closed) node.
    Cancel(usize),
    /// A waiting future is dropped (`Gil::acquire_async`'s `Drop`): `cancel` of its node, and
    /// `unlock` if the lock had been handed to it, so that it goes on to the next in line.
    DropFuture(usize),
    /// `unlock` by the holder.
    Release(usize),
    /// `requeue` of the holder's returning node: a yield.
    Yield(usize),
    /// `checkpoint` by the holder (driven as `take` + `requeue` when it would wait).
    Checkpoint(usize),
    /// `request_drop`.
    RequestDrop,
    /// Sets the runtime flag [`FLAG`].
    SetFlag,
    /// Takes the runtime flag [`FLAG`].
    TakeFlag,
    /// `close`.
    Close,
    /// The holder releases for a blocking region.
    EnterRegion(usize),
    /// The thread comes back from its region: `enqueue` of its returning node.
    LeaveRegion(usize),
    /// The holder lets go lazily for a blocking region: `unlock_away`.
    EnterRegionAway(usize),
    /// The thread back from its lazy region tries `reclaim`; if that fails it is in its region
    /// as after `EnterRegion`, and comes back with `LeaveRegion` or `AskLoan`.
    Reclaim(usize),
    /// `claim` by a waiting thread (one that saw itself offered, or any other: a claim of a
    /// waiter that is not offered changes nothing).
    Claim(usize),
    /// A thread back from its region asks for a loan: `ask_loan`.
    AskLoan(usize),
    /// The asker looks at its ask: `loan`.
    PollLoan(usize),
    /// The asker withdraws its ask: `withdraw_loan` (which finds the loan if it was granted).
    Withdraw(usize),
    /// The borrower gives the lock back: `give_back`; it is then in a region.
    GiveBack(usize),
}

impl Model {
    /// Whether `t` is queued, and on which node.
    pub fn queued_status(&self, t: usize) -> Option<NodeKind> {
        match self.threads[t] {
            Status::Queued { node } => Some(node),
            _ => None,
        }
    }

    /// The holder lets go: the head waiter, if any, is granted.
    fn hand_on(&mut self) {
        match self.queue.pop_front() {
            Some((h, node)) => {
                self.holder = Some(h);
                self.threads[h] = Status::Granted { node };
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
        self.queue.push_back((t, NodeKind::Returning));
        self.threads[t] = Status::Queued {
            node: NodeKind::Returning,
        };
        true
    }

    /// Whether the lock word says locked: held, or offered while its owner is away.
    pub fn locked(&self) -> bool {
        self.holder.is_some() || self.offered.is_some()
    }

    /// The offered head `t` takes the lock (a claim, or a cancel that finds the offer).
    fn take_offer(&mut self, t: usize) {
        assert_eq!(
            self.queue.front().map(|w| w.0),
            Some(t),
            "offered, not head"
        );
        self.queue.pop_front();
        self.holder = Some(t);
        self.threads[t] = Status::Holding;
        self.switches = self.switches.wrapping_add(1);
        self.offered = None;
        self.away_owner = None;
    }

    /// `t` comes back from a region on `node`: takes the lock if free, else queues at the tail.
    fn come_back(&mut self, t: usize, node: NodeKind) {
        if !self.locked() {
            self.holder = Some(t);
            self.threads[t] = Status::Holding;
            return;
        }
        self.queue.push_back((t, node));
        self.threads[t] = Status::Queued { node };
    }
}

impl Model {
    /// Nobody holds, nobody waits, open.
    pub fn initial() -> Model {
        Model {
            holder: None,
            offered: None,
            away_owner: None,
            queue: VecDeque::new(),
            closed: false,
            breaker: 0,
            switches: 0,
            threads: [Status::Idle; THREADS],
            asker: None,
            lender: None,
        }
    }

    /// The loan ends: the lock goes back to the lender.
    fn loan_back(&mut self) {
        let lender = self.lender.take().expect("a loan is out");
        self.holder = Some(lender);
        self.threads[lender] = Status::Holding;
    }

    /// Whether `op` is allowed now (a thread can only do what its status lets it).
    pub fn allows(&self, op: &Op) -> bool {
        let m = self;
        use Status::*;
        match *op {
            Op::TryAcquire(t) | Op::Enqueue(t) => m.threads[t] == Idle,
            Op::Poll(t) => matches!(m.threads[t], Granted { .. } | ClosedOut),
            Op::Cancel(t) | Op::Claim(t) | Op::DropFuture(t) => {
                matches!(m.threads[t], Queued { .. } | Granted { .. } | ClosedOut)
            }
            Op::Release(t) | Op::Yield(t) | Op::EnterRegion(t) | Op::EnterRegionAway(t) => {
                m.threads[t] == Holding
            }
            Op::Checkpoint(t) => matches!(m.threads[t], Holding | Borrowing),
            Op::Reclaim(t) => m.threads[t] == Absence,
            Op::LeaveRegion(t) | Op::AskLoan(t) => m.threads[t] == InRegion,
            Op::PollLoan(t) | Op::Withdraw(t) => matches!(m.threads[t], Asking | Lent),
            Op::GiveBack(t) => m.threads[t] == Borrowing,
            Op::RequestDrop | Op::SetFlag | Op::TakeFlag | Op::Close => true,
        }
    }

    /// The model after `op`.
    #[must_use]
    pub fn apply(self, op: &Op) -> Model {
        let mut m = self;
        match *op {
            Op::TryAcquire(t) => {
                if !m.closed && !m.locked() && m.queue.is_empty() {
                    m.holder = Some(t);
                    m.threads[t] = Status::Holding;
                }
            }
            Op::Enqueue(t) => {
                if m.closed {
                } else if !m.locked() {
                    m.holder = Some(t);
                    m.threads[t] = Status::Holding;
                } else {
                    m.queue.push_back((t, NodeKind::Fresh));
                    m.threads[t] = Status::Queued {
                        node: NodeKind::Fresh,
                    };
                }
            }
            Op::Poll(t) | Op::Cancel(t) | Op::Claim(t) => match m.threads[t] {
                Status::Granted { .. } => m.threads[t] = Status::Holding,
                Status::ClosedOut => m.threads[t] = Status::Idle,
                // A claim, or a cancel, by the offered head takes the lock.
                Status::Queued { .. } if m.offered == Some(t) => m.take_offer(t),
                // A claim of a waiter that is not offered finds it waiting.
                Status::Queued { .. } if matches!(op, Op::Claim(_)) => {}
                Status::Queued { node } => {
                    // Only Cancel gets here (Poll's precondition excludes it).
                    m.queue.retain(|&(w, _)| w != t);
                    // A returning node is a yield or a region: the model takes both back to "in
                    // a region", from where the thread comes back.
                    m.threads[t] = if node.is_returning() {
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
            Op::DropFuture(t) => {
                m = m.apply(&Op::Cancel(t));
                if m.threads[t] == Status::Holding {
                    m = m.apply(&Op::Release(t));
                }
            }
            Op::Yield(t) => {
                m.yield_from(t);
            }
            Op::Checkpoint(t) if m.threads[t] == Status::Borrowing => {
                if m.breaker & Breaker::DROP_REQUEST != 0 {
                    // The request (left set) is the lender's: the loan goes back and the
                    // borrower comes back in line.
                    m.loan_back();
                    m.come_back(t, NodeKind::Returning);
                }
            }
            Op::Checkpoint(t) => {
                let taken = m.breaker & Breaker::DROP_REQUEST;
                m.breaker &= !Breaker::DROP_REQUEST;
                if taken != 0 {
                    m.yield_from(t);
                }
                if m.threads[t] == Status::Holding
                    && let Some(asker) = m.asker
                {
                    // Lends to the asker, and waits for the lock back.
                    m.asker = None;
                    m.breaker &= !Breaker::LOAN_ASKED;
                    m.lender = Some(t);
                    m.threads[t] = Status::Lending;
                    m.holder = Some(asker);
                    m.threads[asker] = Status::Lent;
                }
            }
            Op::RequestDrop => m.breaker |= Breaker::DROP_REQUEST,
            Op::SetFlag => m.breaker |= FLAG,
            Op::TakeFlag => m.breaker &= !FLAG,
            Op::Close => {
                m.closed = true;
                let (fresh, returning): (Vec<_>, Vec<_>) =
                    m.queue.iter().partition(|w| !w.1.is_returning());
                for (w, _) in fresh {
                    m.threads[w] = Status::ClosedOut;
                    // The offered waiter is taken out: the offer passes to the new head, or,
                    // with nobody left, the absence ends and the lock is free.
                    if m.offered == Some(w) {
                        m.offered = None;
                    }
                }
                m.queue = returning.into_iter().collect();
                if m.away_owner.is_some() && m.offered.is_none() {
                    m.offered = m.queue.front().map(|w| w.0);
                    if m.offered.is_none() {
                        m.away_owner = None;
                    }
                }
            }
            Op::EnterRegion(t) => {
                m.threads[t] = Status::InRegion;
                m.hand_on();
            }
            Op::LeaveRegion(t) => m.come_back(t, NodeKind::Returning),
            Op::EnterRegionAway(t) => {
                m.threads[t] = Status::Absence;
                m.holder = None;
                if let Some(&(head, _)) = m.queue.front() {
                    m.offered = Some(head);
                    m.away_owner = Some(t);
                }
            }
            Op::Reclaim(t) => {
                if m.away_owner == Some(t) {
                    // The head goes back to waiting; the owner's turn goes on.
                    m.offered = None;
                    m.away_owner = None;
                    m.holder = Some(t);
                    m.threads[t] = Status::Holding;
                } else {
                    m.threads[t] = Status::InRegion;
                }
            }
            Op::AskLoan(t) => {
                // Only of a held lock whose owner is not away, one ask or loan at a time.
                if m.holder.is_some() && m.asker.is_none() && m.lender.is_none() {
                    m.asker = Some(t);
                    m.breaker |= Breaker::LOAN_ASKED;
                    m.threads[t] = Status::Asking;
                }
            }
            Op::PollLoan(t) | Op::Withdraw(t) => match m.threads[t] {
                Status::Lent => m.threads[t] = Status::Borrowing,
                Status::Asking if matches!(op, Op::Withdraw(_)) => {
                    m.asker = None;
                    m.breaker &= !Breaker::LOAN_ASKED;
                    m.threads[t] = Status::InRegion;
                }
                _ => {}
            },
            Op::GiveBack(t) => {
                m.threads[t] = Status::InRegion;
                m.loan_back();
            }
        }
        m
    }
}

/// A waiter node of the real lock.
type Node = Waiter<SpinPark>;

/// The real lock and, per logical thread, a fresh and a returning node; and
/// the model as it was before the step being applied (the test harness passes only the state
/// after).
pub struct Real {
    gil: Box<RawGil>,
    fresh: Vec<Pin<Box<Node>>>,
    back: Vec<Pin<Box<Node>>>,
    /// Each thread's token from its last `unlock_away`.
    away: Vec<Cell<Option<Absence>>>,
    before: Model,
}

impl Real {
    /// A fresh lock and nodes, matching `Model::initial()`.
    pub fn new() -> Real {
        Real {
            gil: Box::new(RawGil::new()),
            fresh: (0..THREADS).map(|_| Box::pin(Node::new())).collect(),
            back: (0..THREADS).map(|_| Box::pin(Node::returning())).collect(),
            away: vec![Cell::new(None); THREADS],
            before: Model::initial(),
        }
    }

    fn node(&self, t: usize, kind: NodeKind) -> Pin<&Node> {
        match kind {
            NodeKind::Fresh => self.fresh[t].as_ref(),
            NodeKind::Returning => self.back[t].as_ref(),
        }
    }

    /// Applies `op` (allowed by the model before it) to the real lock, and checks what the
    /// real calls returned against `after`, the model after `op`.
    ///
    /// # Panics
    ///
    /// On any difference from the model.
    pub fn step(&mut self, after: &Model, op: Op) {
        let before = std::mem::replace(&mut self.before, after.clone());
        let real = &*self;
        let gil = &*real.gil;
        // The unsafe calls below rely on the model: its preconditions are their contracts.
        // A thread releases, yields or checkpoints only while it holds; nodes are boxed and
        // pinned for the life of `real` and are never dropped while queued (see `teardown`).
        match op {
            Op::TryAcquire(t) => {
                let got = gil.try_lock();
                match after.threads[t] {
                    Status::Holding => assert_eq!(got, Ok(())),
                    _ if after.closed => assert_eq!(got, Err(TryLockError::Closed)),
                    _ => assert_eq!(got, Err(TryLockError::WouldBlock)),
                }
            }
            Op::Enqueue(t) => {
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let got = unsafe { gil.enqueue(real.node(t, NodeKind::Fresh)) };
                let want = match after.threads[t] {
                    Status::Holding => Enqueued::Acquired,
                    Status::Queued { .. } => Enqueued::Queued,
                    _ => Enqueued::Closed,
                };
                assert_eq!(got, want);
            }
            Op::Poll(_) => {} // the node states are compared in `check_invariants`
            Op::DropFuture(t) => {
                let node = match before.threads[t] {
                    Status::Queued { node } | Status::Granted { node } => node,
                    _ => NodeKind::Fresh,
                };
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                if unsafe { gil.cancel(real.node(t, node)) } == Cancel::Granted {
                    // SAFETY: the cancel found the lock handed to this node: it is ours.
                    unsafe { gil.unlock() };
                }
            }
            Op::Cancel(t) => {
                let (node, want) = match before.threads[t] {
                    Status::Queued { node } if before.offered == Some(t) => (node, Cancel::Granted),
                    Status::Queued { node } => (node, Cancel::Removed),
                    Status::Granted { node } => (node, Cancel::Granted),
                    _ => (NodeKind::Fresh, Cancel::Closed), // ClosedOut: only fresh nodes are closed
                };
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let got = unsafe { gil.cancel(real.node(t, node)) };
                assert_eq!(got, want, "cancel of thread {t}");
            }
            // SAFETY: the preconditions above are the contracts (see the top of `apply`).
            Op::Release(_) | Op::EnterRegion(_) => unsafe { gil.unlock() },
            Op::Yield(t) => {
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let yielded = unsafe { gil.requeue(real.node(t, NodeKind::Returning)) };
                assert_eq!(yielded, after.queued_status(t).is_some());
            }
            Op::Checkpoint(t) if before.threads[t] == Status::Borrowing => {
                if gil.breaker().pending() & Breaker::DROP_REQUEST != 0 {
                    // The real checkpoint gives the loan back and relocks, which waits: drive
                    // its steps instead.
                    assert_ne!(gil.breaker().take(Breaker::DROP_REQUEST), 0);
                    gil.breaker().set(Breaker::DROP_REQUEST);
                    // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                    unsafe { gil.give_back() };
                    // SAFETY: as above; the lender holds again, so the node queues.
                    let got = unsafe { gil.enqueue(real.node(t, NodeKind::Returning)) };
                    assert_eq!(got, Enqueued::Queued, "a borrower's relock");
                } else {
                    // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                    let others = unsafe { gil.checkpoint() };
                    assert_eq!(others, after.breaker & !CHECKPOINT_BITS);
                }
            }
            Op::Checkpoint(t) => {
                let pending = gil.breaker().pending();
                if pending & Breaker::DROP_REQUEST != 0 && gil.has_waiters() {
                    // The real checkpoint would wait for the lock to come back, which one OS
                    // thread cannot: drive its steps instead.
                    assert_ne!(gil.breaker().take(Breaker::DROP_REQUEST), 0);
                    // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                    assert!(unsafe { gil.requeue(real.node(t, NodeKind::Returning)) });
                } else if pending & Breaker::LOAN_ASKED != 0 {
                    // The real checkpoint would lend and wait for the loan back: drive its
                    // steps (nobody waits, so a drop request is only cleared).
                    gil.breaker().take(Breaker::DROP_REQUEST);
                    // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                    assert!(unsafe { gil.lend_asked() }, "lend of thread {t}");
                } else {
                    // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                    let others = unsafe { gil.checkpoint() };
                    assert_eq!(others, after.breaker & !CHECKPOINT_BITS);
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
                let got = unsafe { gil.enqueue(real.node(t, NodeKind::Returning)) };
                let want = match after.threads[t] {
                    Status::Holding => Enqueued::Acquired,
                    _ => Enqueued::Queued,
                };
                assert_eq!(got, want);
            }
            Op::Claim(t) => {
                let (node, want) = match before.threads[t] {
                    Status::Queued { node } if before.offered == Some(t) => {
                        (node, WaitState::Granted)
                    }
                    Status::Queued { node } => (node, WaitState::Waiting),
                    Status::Granted { node } => (node, WaitState::Granted),
                    _ => (NodeKind::Fresh, WaitState::Closed), // ClosedOut: only fresh nodes
                };
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let got = unsafe { gil.claim(real.node(t, node)) };
                assert_eq!(got, want, "claim of thread {t}");
            }
            Op::EnterRegionAway(t) => {
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                real.away[t].set(Some(unsafe { gil.unlock_away() }));
            }
            Op::Reclaim(t) => {
                let away = real.away[t].take().expect("a thread away has its token");
                let back = gil.reclaim(away);
                assert_eq!(back, after.threads[t] == Status::Holding, "reclaim of {t}");
            }
            Op::AskLoan(t) => {
                assert_eq!(gil.ask_loan(), after.asker == Some(t), "ask of thread {t}");
            }
            Op::PollLoan(t) => {
                let want = match before.threads[t] {
                    Status::Lent => Loan::Lent,
                    _ if before.holder.is_some() => Loan::Asked,
                    _ => Loan::Unheld,
                };
                assert_eq!(gil.loan(), want, "loan of thread {t}, model {before:?}");
            }
            Op::Withdraw(t) => {
                // SAFETY: the preconditions above are the contracts (see the top of `apply`).
                let withdrawn = unsafe { gil.withdraw_loan() };
                assert_eq!(
                    withdrawn,
                    before.threads[t] == Status::Asking,
                    "withdraw of {t}"
                );
            }
            // SAFETY: the preconditions above are the contracts (see the top of `apply`).
            Op::GiveBack(_) => unsafe { gil.give_back() },
        }
    }

    /// Checks that the real lock's state is the model's: lock word, every waiter, switch
    /// count, breaker flags.
    ///
    /// # Panics
    ///
    /// On any difference.
    pub fn check(&self, m: &Model) {
        let real = self;
        let gil = &*real.gil;
        assert_eq!(gil.is_locked(), m.locked(), "locked, model {m:?}");
        assert_eq!(
            gil.has_waiters(),
            !m.queue.is_empty(),
            "waiters, model {m:?}"
        );
        assert_eq!(gil.is_closed(), m.closed);
        assert_eq!(gil.switches(), m.switches, "switches");
        assert_eq!(gil.breaker().pending(), m.breaker, "breaker");
        assert_eq!(gil.is_lent(), m.lender.is_some(), "lent, model {m:?}");
        for t in 0..THREADS {
            let on = |kind: NodeKind| real.node(t, kind).state();
            let all = [NodeKind::Fresh, NodeKind::Returning];
            match m.threads[t] {
                Status::Queued { node } => {
                    let want = if m.offered == Some(t) {
                        WaitState::Offered
                    } else {
                        WaitState::Waiting
                    };
                    assert_eq!(on(node), want, "thread {t}, model {m:?}")
                }
                Status::Granted { node } => {
                    assert_eq!(on(node), WaitState::Granted, "thread {t}")
                }
                Status::ClosedOut => {
                    assert_eq!(on(NodeKind::Fresh), WaitState::Closed, "thread {t}")
                }
                // Not queued: no node may be in the queue. (A node keeps saying Granted or
                // Closed after its thread has acted on it, until it is queued again.)
                _ => {
                    for kind in all {
                        let state = on(kind);
                        assert!(
                            !matches!(state, WaitState::Waiting | WaitState::Offered),
                            "thread {t} still queued"
                        );
                    }
                }
            }
        }
    }

    /// Takes every queued node out, so the nodes can be dropped.
    pub fn finish(self, m: &Model) {
        let real = self;
        // Take every queued node out before the nodes are dropped.
        for t in 0..THREADS {
            if let Some(node) = m.queued_status(t) {
                // SAFETY: queued by this test on `real.gil`, not yet acted on.
                let _ = unsafe { real.gil.cancel(real.node(t, node)) };
            }
        }
    }
}

impl Default for Real {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `ops` against the model and the real lock, skipping the ones the model does not allow
/// at that point, and checking after every step. Returns how many ran.
///
/// # Panics
///
/// On any difference between the real lock and the model.
pub fn run(ops: &[Op]) -> usize {
    let (mut model, mut real, mut ran) = (Model::initial(), Real::new(), 0);
    for op in ops {
        if !model.allows(op) {
            continue;
        }
        model = model.apply(op);
        real.step(&model, op.clone());
        real.check(&model);
        ran += 1;
    }
    real.finish(&model);
    ran
}

/// Reads operations from bytes (the fuzzer's input): one byte each, the low nibble the kind,
/// bits 4–5 the logical thread; a byte with both top bits set is one of the lazy region's
/// operations (low bits 0–2) or a step of a loan asked for (low bits 3) instead.
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    bytes
        .iter()
        .map(|&b| {
            let t = usize::from(b >> 4) % THREADS;
            // Both top bits set: the lazy region's operations, and with the low bits 3, the
            // loan asked for (bits 2–3 say which step).
            if b >> 6 == 3 {
                return match (b & 0x03, (b >> 2) & 0x03) {
                    (0, _) => Op::EnterRegionAway(t),
                    (1, _) => Op::Reclaim(t),
                    (2, _) => Op::Claim(t),
                    (_, 0) => Op::AskLoan(t),
                    (_, 1) => Op::PollLoan(t),
                    (_, 2) => Op::Withdraw(t),
                    _ => Op::GiveBack(t),
                };
            }
            match b & 0x0f {
                0 => Op::TryAcquire(t),
                1 => Op::Enqueue(t),
                2 => Op::DropFuture(t),
                3 => Op::Poll(t),
                4 => Op::Cancel(t),
                5 => Op::Release(t),
                6 => Op::AskLoan(t),
                7 => Op::Yield(t),
                8 => Op::Checkpoint(t),
                9 => Op::RequestDrop,
                10 => Op::SetFlag,
                11 => Op::TakeFlag,
                12 => Op::Close,
                13 => Op::EnterRegion(t),
                _ => Op::LeaveRegion(t),
            }
        })
        .collect()
}

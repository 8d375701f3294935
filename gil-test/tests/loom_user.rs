//! How a user model-checks their own code that uses the lock: build with `--cfg loom`, and
//! `gil_std::Gil` runs on loom's atomics and park/unpark, so loom explores the interleavings of
//! *your* code around it. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p gil-test --test loom_user --profile loom`.
//!
//! Under loom, `Gil::new()` is not `const` (loom's atomics are not), so there is no `static`:
//! make the lock inside the model. The clock thread is off, so nothing preempts a holder; ask
//! for drops yourself if your code relies on them.
#![cfg(loom)]

use std::cell::Cell;

use gil_std::{Gil, GilCell};
use loom::thread;

/// A toy interpreter state: a counter and a log, only reachable through the lock.
struct Interp<'g> {
    steps: GilCell<'g, Cell<u32>>,
    last: GilCell<'g, Cell<Option<u32>>>,
}

/// The user's own logic: a worker that does some steps and, around a "syscall", releases the
/// lock. The property under test is the user's: every step is counted and `last` is always the
/// thread that made the latest step.
fn worker(gil: &Gil, interp: &Interp<'_>, me: u32) {
    let mut g = gil.acquire();
    let steps = interp.steps.get(&g);
    steps.set(steps.get() + 1);
    interp.last.get(&g).set(Some(me));
    g.allow_threads(|| ()); // a blocking call: another thread may run here
    interp.last.get(&g).set(Some(me));
    let steps = interp.steps.get(&g);
    steps.set(steps.get() + 1);
}

#[test]
fn a_users_interpreter_model_checks() {
    // Bound the preemptions: unbounded, even two threads around a lock explode (this model ran
    // for minutes without a bound). `LOOM_MAX_PREEMPTIONS` overrides the 3 chosen here.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(3));
    builder.check(|| {
        // Leaked so the spawned loom threads can borrow them for 'static; one small leak per
        // explored execution.
        let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
        let interp: &'static Interp<'static> = Box::leak(Box::new(Interp {
            steps: GilCell::new(gil, Cell::new(0)),
            last: GilCell::new(gil, Cell::new(None)),
        }));
        let other = thread::spawn(move || worker(gil, interp, 1));
        worker(gil, interp, 0);
        other.join().unwrap();
        let g = gil.acquire();
        assert_eq!(interp.steps.get(&g).get(), 4, "a step was lost");
    });
}

//! Loom models of gil-std's safe API: the real `Gil`, built with loom's atomics, its waiters
//! parked with loom's park/unpark. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p gil-std --test loom --profile loom`
//! (`scripts/test` does). Bounds and the bug each model catches: `docs/verification.md`.
//!
//! The clock thread is off under loom, so timed preemption is not modelled here; timeouts are,
//! with deadlines that have already passed.
#![cfg(loom)]

#[path = "../../gil-core/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use gil_std::{AcquireError, Gil};
use loom::sync::Arc;
use loom::thread;
use support::{Protected, model};

/// A blocking region releases the lock (another thread gets in) and takes it back before the
/// holder touches protected data again.
#[test]
fn blocking_region_round_trip() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let other = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let _g = gil.acquire();
                data.bump();
            })
        };
        let mut g = gil.acquire();
        data.bump();
        g.allow_threads(|| ());
        data.bump();
        drop(g);
        other.join().unwrap();
        assert_eq!(data.bump(), 4, "every critical section ran once, in order");
    });
}

/// `ensure` nests: dropping a nested guard releases nothing, so another thread's `ensure`
/// gets in only after the outermost guard is gone.
#[test]
fn ensure_nesting() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let foreign = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let _g = gil.ensure();
                data.bump();
            })
        };
        let outer = gil.ensure();
        data.bump();
        {
            let _inner = gil.ensure();
            data.bump();
        }
        data.bump(); // still held: the nested guard released nothing
        drop(outer);
        foreign.join().unwrap();
    });
}

/// A timed acquire whose deadline passes just as the holder releases: it either times out
/// and leaves the lock free, or learns it was granted and holds it — never neither.
#[test]
fn timeout_vs_grant() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let g = gil.acquire();
        let timed = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || match gil.try_acquire_for(Duration::ZERO) {
                Ok(_g) => {
                    data.bump();
                    true
                }
                Err(e) => {
                    assert_eq!(e, AcquireError::Timeout);
                    false
                }
            })
        };
        data.bump();
        drop(g);
        let got = timed.join().unwrap();
        let g = gil.try_acquire();
        assert!(
            g.is_some(),
            "the lock was lost (the timed thread got it: {got})"
        );
        assert_eq!(data.bump(), if got { 3 } else { 2 });
    });
}

/// Closing while a thread waits wakes it with `Closed`; the holder finishes, including a
/// blocking region after the close.
#[test]
fn close_while_waiting() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let mut g = gil.acquire();
        let waiter = {
            let gil = gil.clone();
            thread::spawn(move || gil.acquire_checked().map(drop))
        };
        assert!(gil.close().is_empty(), "no pending calls");
        g.allow_threads(|| ());
        assert!(gil.is_held_by_current_thread(), "taken back after close");
        drop(g);
        assert_eq!(waiter.join().unwrap(), Err(AcquireError::Closed));
    });
}

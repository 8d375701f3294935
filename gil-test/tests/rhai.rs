//! One rhai engine (without its `sync` feature, so the engine, its compiled scripts and its
//! shared values are `Rc`-based and `!Send`) shared by OS threads through a `Gil`, as
//! docs/embedding.md lays out. rhai keeps the state of an evaluation on the evaluating
//! thread's own stack, with no "current state" of its own elsewhere, so its progress callback
//! may checkpoint in place: another thread evaluates meanwhile on its own stack. Host
//! functions block inside a nested guard's region.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use gil_std::{Gil, GilBound, GilGuard};
use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};

/// The engine, its scripts, and two values every script sees: `counter` and `stop`, shared
/// (`Rc<RefCell<_>>` inside) between the scopes of all threads.
struct Shared {
    engine: Engine,
    scripts: HashMap<&'static str, AST>,
    counter: Dynamic,
    stop: Dynamic,
}

/// The lock and the interpreter behind it.
struct Runtime {
    gil: &'static Gil,
    /// `GilBound`'s contract: the engine, the scripts and the shared values (and every clone
    /// of them, in the scopes below) are used, cloned and dropped only while the thread holds
    /// `gil`, and kept across a checkpoint or a region only untouched by the thread that
    /// keeps them.
    shared: GilBound<'static, Shared>,
}

const SCRIPTS: [(&str, &str); 5] = [
    ("bump", "for i in 0..n { counter += 1; }"),
    (
        "bump_by_copy",
        "for i in 0..n { let c = counter; c += 1; counter = c; }",
    ),
    ("spin_until_stopped", "while !stop {}"),
    ("spin", "loop {}"),
    ("nap", "sleep_ms(n);"),
];

/// Set while a script's `sleep_ms` sleeps.
static NAPPING: AtomicBool = AtomicBool::new(false);

/// A new runtime: an engine whose progress callback checkpoints when the lock wants it, and
/// `sleep_ms(ms)`, a host function that sleeps in a blocking region. Leaked: its threads may
/// outlive a failing test.
fn runtime() -> &'static Runtime {
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(Duration::from_millis(
        1,
    ))));
    let shared = {
        let _g = gil.acquire();
        let mut engine = Engine::new();
        engine.on_progress(move |_| {
            if !gil.wants_checkpoint() {
                return None;
            }
            // Inside the evaluation, with the driver's guard further up: a nested guard. An
            // interrupt ends the script (rhai's `ErrorTerminated`).
            match gil.ensure().checkpoint() {
                Ok(()) => None,
                Err(_) => Some("interrupted".into()),
            }
        });
        engine.register_fn("sleep_ms", move |ms: i64| {
            // A nested guard's region lets the lock go all the same.
            // SAFETY: the closure sleeps and sets an atomic: nothing under the lock.
            unsafe {
                gil.ensure().allow_threads(move || {
                    NAPPING.store(true, SeqCst);
                    thread::sleep(Duration::from_millis(ms.unsigned_abs()));
                    NAPPING.store(false, SeqCst);
                })
            };
        });
        let scripts = SCRIPTS
            .iter()
            .map(|&(name, text)| (name, engine.compile(text).unwrap()))
            .collect();
        Shared {
            engine,
            scripts,
            counter: Dynamic::from(0_i64).into_shared(),
            stop: Dynamic::from(false).into_shared(),
        }
    };
    // SAFETY: the engine, the scripts and the shared values, and every clone of them, are
    // touched only under `gil` (see `Runtime::shared`); rhai's values are `!Send` for their
    // `Rc`s, not for any tie to a thread.
    let shared = unsafe { GilBound::new(gil, shared) };
    Box::leak(Box::new(Runtime { gil, shared }))
}

/// Runs the script `name` with `n` in its scope, beside the shared `counter` and `stop`.
fn run(g: &GilGuard<'static>, rt: &Runtime, name: &str, n: i64) -> Result<(), Box<EvalAltResult>> {
    let shared = rt.shared.get(g);
    let mut scope = Scope::new();
    scope.push("n", n);
    scope.push_dynamic("counter", shared.counter.clone());
    scope.push_dynamic("stop", shared.stop.clone());
    shared
        .engine
        .run_ast_with_scope(&mut scope, &shared.scripts[name])
}

/// The shared counter.
fn counter(g: &GilGuard<'static>, rt: &Runtime) -> i64 {
    rt.shared.get(g).counter.as_int().unwrap()
}

/// Four threads bump one shared value; the lock moves between them mid-script (a 1 ms
/// interval), from rhai's progress callback. `counter += 1` is one operation of rhai's, with
/// no progress call inside it, so no update is lost.
#[test]
fn four_threads_share_one_rhai_engine_and_lose_no_update() {
    let rt = runtime();
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let g = rt.gil.acquire();
                run(&g, rt, "bump", 50_000).unwrap();
            });
        }
    });
    let g = rt.gil.acquire();
    assert_eq!(counter(&g, rt), 200_000);
    assert!(
        rt.gil.stats().forced_drops > 0,
        "the scripts were preempted"
    );
}

/// The same with the read and the write in two statements: a hand-over between them loses
/// updates, as it would in any runtime that switches threads between statements.
#[test]
fn a_hand_over_between_a_read_and_a_write_loses_updates() {
    let rt = runtime();
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let g = rt.gil.acquire();
                run(&g, rt, "bump_by_copy", 50_000).unwrap();
            });
        }
    });
    let g = rt.gil.acquire();
    let counted = counter(&g, rt);
    assert!(
        rt.gil.stats().forced_drops > 0,
        "the scripts were preempted"
    );
    // Every hand-over lands between two statements; two of the loop's three are mid-update.
    assert!(counted < 200_000, "no update lost: {counted}");
    println!("bump_by_copy from 4 threads: {counted} of 200000");
}

/// A host function that sleeps lets another thread run scripts meanwhile.
#[test]
fn a_host_function_sleeps_without_the_lock() {
    let rt = runtime();
    thread::scope(|s| {
        s.spawn(|| {
            let g = rt.gil.acquire();
            run(&g, rt, "nap", 300).unwrap();
        });
        while !NAPPING.load(SeqCst) {
            thread::yield_now();
        }
        let g = rt.gil.acquire();
        run(&g, rt, "bump", 10).unwrap();
        assert!(
            NAPPING.load(SeqCst),
            "ran a script while the other thread slept"
        );
    });
}

/// A runaway script is stopped by an interrupt: the progress callback's checkpoint reports
/// it, and the callback ends the script.
#[test]
fn an_interrupt_stops_a_runaway_script() {
    let rt = runtime();
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let g = rt.gil.acquire();
        tx.send(rt.gil.interrupt_handle()).unwrap();
        run(&g, rt, "spin", 0).map_err(|e| e.to_string())
    });
    rx.recv().unwrap().interrupt();
    let stopped = runner.join().unwrap().unwrap_err();
    assert!(stopped.contains("terminated"), "{stopped}");
}

/// A pending call sets a shared value that a running script waits for: the progress
/// callback's checkpoint runs it.
#[test]
fn a_pending_call_reaches_a_running_script() {
    let rt = runtime();
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let g = rt.gil.acquire();
        tx.send(()).unwrap(); // holding: the call runs at one of this thread's checkpoints
        run(&g, rt, "spin_until_stopped", 0).map_err(|e| e.to_string())
    });
    rx.recv().unwrap();
    rt.gil
        .add_pending_call(move |g| {
            // A clone of the shared value (a reference count, under the lock) to write through.
            let mut stop = rt.shared.get(g).stop.clone();
            *stop.write_lock::<bool>().unwrap() = true;
        })
        .unwrap();
    assert_eq!(runner.join().unwrap(), Ok(()));
}

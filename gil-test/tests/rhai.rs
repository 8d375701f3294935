//! One rhai engine (without its `sync` feature, so the engine, its compiled scripts and its
//! values are `Rc`-based and `!Send`) shared by OS threads through a `Gil`, as
//! docs/embedding.md lays out. The progress callback checkpoints in place, inside the
//! evaluation: another thread evaluates meanwhile, on the same engine and compiled scripts.
//!
//! That is right while no value this evaluation has borrowed is reachable from another
//! thread's. rhai borrows a shared value (a `RefCell`) for a whole indexing, property access or
//! method call, with progress calls inside, those of the closures a method calls included; a
//! hand-over there leaves the borrow open, and another thread that reaches the value gets
//! rhai's `ErrorDataRace`, or a panic inside rhai. So each thread evaluates with values of its
//! own; what the threads share lives on the Rust side, behind registered functions, or is a
//! variable that scripts only read and assign whole; modules are made before the threads
//! import them. The tests after those show each way out of that rule failing.
#![cfg(not(loom))]

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use gil_std::{Gil, GilBound, GilCell, GilGuard};
use rhai::module_resolvers::{FileModuleResolver, StaticModuleResolver};
use rhai::{AST, Dynamic, Engine, EvalAltResult, Module, Scope};

/// When the progress callback hands the lock over, in place.
#[derive(Clone, Copy, PartialEq)]
enum HandOver {
    /// When the lock asks for a checkpoint: at the end of a slice, for an interrupt or a
    /// pending call. What an embedding does.
    WhenAsked,
    /// At every progress call while another thread waits: a hand-over inside every borrow
    /// rhai takes, for the tests of what survives one.
    AtEveryOperation,
    /// At a progress call while one of the shared values is borrowed and another thread
    /// waits: the moment an in-place hand-over goes wrong, made certain.
    WhileBorrowed,
}

/// The engine, its compiled scripts, and the values every thread's scope gets.
struct Shared {
    engine: Engine,
    scripts: HashMap<&'static str, AST>,
    /// Shared values (`Rc<RefCell<_>>` inside) are the same value in every scope.
    values: Vec<(&'static str, Dynamic)>,
}

/// The lock, the interpreter behind it, and what the threads share on the Rust side.
struct Runtime {
    gil: &'static Gil,
    /// `GilBound`'s contract: the engine, the scripts and the values (and every clone of them,
    /// in the scopes below and in the progress callback) are used, cloned and dropped only
    /// while the thread holds `gil`, and kept across a checkpoint or a region only untouched by
    /// the thread that keeps them.
    shared: GilBound<'static, Shared>,
    /// Added to by the registered function `tally(n)`.
    tally: &'static GilCell<'static, Cell<i64>>,
    /// Counted by the registered function `loaded()`.
    loaded: &'static GilCell<'static, Cell<i64>>,
}

/// Set while a script's `sleep_ms` sleeps.
static NAPPING: AtomicBool = AtomicBool::new(false);

/// A new runtime: an engine whose progress callback hands the lock over as `hand_over` says,
/// `setup` run on it, `scripts` compiled, and `values` (made holding the lock) in every scope.
/// Its host functions: `sleep_ms(ms)`, which sleeps in a blocking region; `tally(n)` and
/// `loaded()`, which count on the Rust side. Leaked: its threads may outlive a failing test.
fn runtime(
    hand_over: HandOver,
    scripts: &[&'static str],
    values: impl FnOnce() -> Vec<(&'static str, Dynamic)>,
    setup: impl FnOnce(&mut Engine),
) -> &'static Runtime {
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(Duration::from_millis(
        1,
    ))));
    let tally: &'static GilCell<Cell<i64>> = Box::leak(Box::new(GilCell::new(gil, Cell::new(0))));
    let loaded: &'static GilCell<Cell<i64>> = Box::leak(Box::new(GilCell::new(gil, Cell::new(0))));
    let shared = {
        let _g = gil.acquire();
        let mut engine = Engine::new();
        let values = values();
        let watched: Vec<Dynamic> = values.iter().map(|(_, v)| v.clone()).collect();
        engine.on_progress(move |_| {
            let now = match hand_over {
                HandOver::WhenAsked => gil.wants_checkpoint(),
                HandOver::AtEveryOperation => gil.has_waiters(),
                // A closure's captured variables are borrowed inside the closure's value.
                HandOver::WhileBorrowed => {
                    gil.has_waiters()
                        && watched
                            .iter()
                            .any(|v| v.is_locked() || v.flatten_clone().is_locked())
                }
            };
            if !now {
                return None;
            }
            if hand_over != HandOver::WhenAsked {
                gil.request_drop();
            }
            // Inside the evaluation, with the driver's guard further up: a nested guard. An
            // interrupt ends the script (rhai's `ErrorTerminated`).
            match gil.ensure().checkpoint() {
                Ok(()) => None,
                Err(_) => Some("interrupted".into()),
            }
        });
        engine.register_fn("sleep_ms", move |ms: i64| {
            // A nested guard's region lets the lock go all the same. Called as a function, not
            // as a method, so no value is borrowed meanwhile.
            // SAFETY: the closure sleeps and sets an atomic: nothing under the lock.
            unsafe {
                gil.ensure().allow_threads(move || {
                    NAPPING.store(true, SeqCst);
                    thread::sleep(Duration::from_millis(ms.unsigned_abs()));
                    NAPPING.store(false, SeqCst);
                })
            };
        });
        // State of all threads, on the Rust side: a registered function runs to its end
        // without a progress call, so nothing it touches stays borrowed across a hand-over.
        engine.register_fn("tally", move |n: i64| {
            let g = gil.ensure();
            tally.get(&g).set(tally.get(&g).get() + n);
        });
        engine.register_fn("loaded", move || {
            let g = gil.ensure();
            loaded.get(&g).set(loaded.get(&g).get() + 1);
        });
        setup(&mut engine);
        let scripts = scripts
            .iter()
            .map(|&text| (text, engine.compile(text).unwrap()))
            .collect();
        Shared {
            engine,
            scripts,
            values,
        }
    };
    // SAFETY: the engine, the scripts and the values, and every clone of them, are touched only
    // under `gil` (see `Runtime::shared`); rhai's values are `!Send` for their `Rc`s, not for
    // any tie to a thread.
    let shared = unsafe { GilBound::new(gil, shared) };
    Box::leak(Box::new(Runtime {
        gil,
        shared,
        tally,
        loaded,
    }))
}

/// Runs the compiled `script` with `vars` in its scope, beside the runtime's values, and gives
/// back its value.
fn run(
    g: &GilGuard<'_>,
    rt: &Runtime,
    script: &str,
    vars: &[(&'static str, i64)],
) -> Result<Dynamic, Box<EvalAltResult>> {
    let shared = rt.shared.get(g);
    let mut scope = Scope::new();
    for &(name, value) in vars {
        scope.push(name, value);
    }
    for (name, value) in &shared.values {
        scope.push_dynamic(*name, value.clone());
    }
    shared
        .engine
        .eval_ast_with_scope(&mut scope, &shared.scripts[script])
}

/// The runtime's value `name`.
fn value(g: &GilGuard<'_>, rt: &Runtime, name: &str) -> Dynamic {
    let values = &rt.shared.get(g).values;
    let (_, value) = values.iter().find(|(v, _)| *v == name).unwrap();
    value.clone()
}

/// The sum of what `tally(n)` was given, and how many times `loaded()` was called.
fn tallied(g: &GilGuard<'_>, rt: &Runtime) -> (i64, i64) {
    (rt.tally.get(g).get(), rt.loaded.get(g).get())
}

/// How an evaluation ended, in a form that may leave the thread.
#[derive(Clone, Debug, PartialEq)]
enum Ended {
    /// With an integer.
    With(i64),
    /// With another value.
    Ran,
    /// With rhai's `ErrorDataRace`, perhaps inside a function call.
    DataRace,
    Failed(String),
    Panicked(String),
}

impl Ended {
    fn of(result: Result<Dynamic, Box<EvalAltResult>>) -> Self {
        match result {
            Ok(v) => v.as_int().map_or(Ended::Ran, Ended::With),
            Err(e) if data_race(&e) => Ended::DataRace,
            Err(e) => Ended::Failed(e.to_string()),
        }
    }

    /// Runs `script` on this thread, which holds the lock through `g`, catching a panic.
    fn running(g: &GilGuard<'_>, rt: &Runtime, script: &str, vars: &[(&'static str, i64)]) -> Self {
        match panic::catch_unwind(AssertUnwindSafe(|| run(g, rt, script, vars))) {
            Ok(result) => Ended::of(result),
            Err(panic) => Ended::Panicked(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        }
    }
}

fn data_race(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorDataRace(..) => true,
        EvalAltResult::ErrorInFunctionCall(.., inner, _) => data_race(inner),
        _ => false,
    }
}

/// Runs `script` with `n` on `threads` threads, all of them on their way to the lock before
/// the first begins, and gives back how each ended.
fn on_threads(rt: &'static Runtime, threads: usize, script: &'static str, n: i64) -> Vec<Ended> {
    let arrived = AtomicUsize::new(0);
    let g = rt.gil.acquire();
    thread::scope(|s| {
        let runs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    arrived.fetch_add(1, SeqCst);
                    let g = rt.gil.acquire();
                    Ended::running(&g, rt, script, &[("n", n)])
                })
            })
            .collect();
        while arrived.load(SeqCst) < threads || !rt.gil.has_waiters() {
            thread::yield_now();
        }
        drop(g);
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// Runs `script` on this thread with `me = 1`, and on another with `me = 2`, which waits for
/// the lock from the start, so that the first hand-over of the first lets the second run. Both
/// run the same compiled script, as a server's threads do (a closure is called in the script
/// that made it). Gives back how each ended.
fn one_then_another(rt: &'static Runtime, script: &'static str) -> (Ended, Ended) {
    let g = rt.gil.acquire();
    thread::scope(|s| {
        let other = s.spawn(|| {
            let g = rt.gil.acquire();
            Ended::running(&g, rt, script, &[("me", 2)])
        });
        while !rt.gil.has_waiters() {
            thread::yield_now();
        }
        let first = Ended::running(&g, rt, script, &[("me", 1)]);
        drop(g);
        (first, other.join().unwrap())
    })
}

// What an embedding does: hand-overs when the lock asks.

const BUMP: &str = "for i in 0..n { counter += 1; }";
const BUMP_BY_COPY: &str = "for i in 0..n { let c = counter; c += 1; counter = c; }";
const NAP: &str = "sleep_ms(n);";
const SPIN: &str = "loop {}";
const SPIN_UNTIL_STOPPED: &str = "while !stop {} 1";

/// The runtime of these tests: every scope gets `counter` and `stop`, shared variables.
fn counter_runtime() -> &'static Runtime {
    runtime(
        HandOver::WhenAsked,
        &[BUMP, BUMP_BY_COPY, NAP, SPIN, SPIN_UNTIL_STOPPED],
        || {
            vec![
                ("counter", Dynamic::from(0_i64).into_shared()),
                ("stop", Dynamic::from(false).into_shared()),
            ]
        },
        |_| {},
    )
}

/// The shared counter.
fn counter(g: &GilGuard<'_>, rt: &Runtime) -> i64 {
    value(g, rt, "counter").as_int().unwrap()
}

/// Four threads bump one shared variable; the lock moves between them mid-script (a 1 ms
/// interval), from rhai's progress callback. `counter += 1` on a plain variable borrows it for
/// one operation of rhai's, with no progress call inside, so no update is lost. (Indexing it,
/// a property or a method would keep it borrowed across progress calls: see the tests at the
/// end.)
#[test]
fn four_threads_share_one_rhai_engine_and_lose_no_update() {
    let rt = counter_runtime();
    assert_eq!(on_threads(rt, 4, BUMP, 50_000), vec![Ended::Ran; 4]);
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
    let rt = counter_runtime();
    assert_eq!(on_threads(rt, 4, BUMP_BY_COPY, 50_000), vec![Ended::Ran; 4]);
    let g = rt.gil.acquire();
    let counted = counter(&g, rt);
    assert!(
        rt.gil.stats().forced_drops > 0,
        "the scripts were preempted"
    );
    // Every hand-over lands between two statements; two of the loop's three are mid-update.
    assert!(counted < 200_000, "no update lost: {counted}");
}

/// A host function that sleeps lets another thread run scripts meanwhile.
#[test]
fn a_host_function_sleeps_without_the_lock() {
    let rt = counter_runtime();
    thread::scope(|s| {
        s.spawn(|| {
            let g = rt.gil.acquire();
            assert_eq!(Ended::running(&g, rt, NAP, &[("n", 300)]), Ended::Ran);
        });
        while !NAPPING.load(SeqCst) {
            thread::yield_now();
        }
        let g = rt.gil.acquire();
        assert_eq!(Ended::running(&g, rt, BUMP, &[("n", 10)]), Ended::Ran);
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
    let rt = counter_runtime();
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let g = rt.gil.acquire();
        tx.send(rt.gil.interrupt_handle()).unwrap();
        Ended::running(&g, rt, SPIN, &[])
    });
    rx.recv().unwrap().interrupt();
    match runner.join().unwrap() {
        Ended::Failed(stopped) => assert!(stopped.contains("terminated"), "{stopped}"),
        ended => panic!("not stopped: {ended:?}"),
    }
}

/// A pending call sets a shared value that a running script waits for: the progress
/// callback's checkpoint runs it.
#[test]
fn a_pending_call_reaches_a_running_script() {
    let rt = counter_runtime();
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let g = rt.gil.acquire();
        tx.send(()).unwrap(); // holding: the call runs at one of this thread's checkpoints
        Ended::running(&g, rt, SPIN_UNTIL_STOPPED, &[])
    });
    rx.recv().unwrap();
    rt.gil
        .add_pending_call(move |g| {
            // A clone of the shared value (a reference count, under the lock) to write through.
            *value(g, rt, "stop").write_lock::<bool>().unwrap() = true;
        })
        .unwrap();
    assert_eq!(runner.join().unwrap(), Ended::With(1));
}

// What holds through a hand-over inside every borrow: values of each thread's own, state
// shared on the Rust side, modules made before the threads import them.

/// A runtime that hands over at every operation, without shared rhai values.
fn own_values_runtime(
    scripts: &[&'static str],
    setup: impl FnOnce(&mut Engine),
) -> &'static Runtime {
    runtime(HandOver::AtEveryOperation, scripts, Vec::new, setup)
}

const OWN_ARRAY_AND_MAP: &str = r"
    let arr = [0];
    let map = #{ hits: 0 };
    for i in 0..n { arr[0] += 1; map.hits += 1; }
    tally(arr[0] + map.hits);
    arr[0] + map.hits
";

/// Four threads, each indexing an array and assigning a map's property of its own
/// (`arr[0] += 1`, `map.hits += 1`), handing over inside each borrow; they add up a total on
/// the Rust side, through `tally`.
#[test]
fn a_threads_own_array_and_map_survive_hand_overs_inside_indexing() {
    let rt = own_values_runtime(&[OWN_ARRAY_AND_MAP], |_| {});
    assert_eq!(
        on_threads(rt, 4, OWN_ARRAY_AND_MAP, 200),
        vec![Ended::With(400); 4]
    );
    let g = rt.gil.acquire();
    assert_eq!(tallied(&g, rt), (4 * 400, 0));
    assert!(rt.gil.stats().forced_drops > 0, "the scripts handed over");
}

const OWN_LIST: &str = r"
    let list = [];
    for i in 0..n { list.push(n - i); }
    list.sort(|a, b| a - b);
    let sum = list.reduce(|s, x| s + x, 0);
    tally(sum);
    if list[0] == 1 && list[n - 1] == n { sum } else { -1 }
";

/// Four threads, each sorting and folding a list of its own with closures
/// (`list.sort(|a, b| ...)`, `list.reduce(|s, x| ...)`), which rhai calls while the list is
/// borrowed, handing over inside them.
#[test]
fn a_threads_own_list_survives_hand_overs_inside_its_method_calls() {
    let rt = own_values_runtime(&[OWN_LIST], |_| {});
    assert_eq!(
        on_threads(rt, 4, OWN_LIST, 100),
        vec![Ended::With(5_050); 4]
    );
    let g = rt.gil.acquire();
    assert_eq!(tallied(&g, rt), (4 * 5_050, 0));
    assert!(rt.gil.stats().forced_drops > 0, "the scripts handed over");
}

const OWN_CAPTURES: &str = r"
    fn slow() { for i in 0..10 { this += 1; } }
    let x = 0;
    let f = || x.slow();
    for i in 0..n { f.call(); }
    let total = 0;
    for y in 0..n { let g = || y.slow(); g.call(); total += y; }
    tally(x + total);
    x + total
";

/// Four threads, each calling closures of its own that run a method on the variable they
/// captured (`x.slow()`), one of them a `for` loop's variable that the loop writes next, and
/// handing over inside the method.
#[test]
fn a_threads_own_captured_variables_survive_hand_overs_inside_methods() {
    let rt = own_values_runtime(&[OWN_CAPTURES], |_| {});
    // x: 10 a call; total: each y, with 10 added by the closure.
    let each = 10 * 50 + (0..50).map(|y| y + 10).sum::<i64>();
    assert_eq!(
        on_threads(rt, 4, OWN_CAPTURES, 50),
        vec![Ended::With(each); 4]
    );
    let g = rt.gil.acquire();
    assert_eq!(tallied(&g, rt), (4 * each, 0));
    assert!(rt.gil.stats().forced_drops > 0, "the scripts handed over");
}

/// A module whose top level counts its runs and takes progress calls.
const MODULE: &str = r"
    loaded();
    let total = 0;
    for i in 0..50 { total += i; }
    export const TOTAL = total;
    fn twice(v) { v * 2 }
";

const IMPORT: &str = r#"import "numbers" as m; m::twice(m::TOTAL)"#;

/// A module made once, before the threads run, and imported by four threads, each handing over
/// inside the import: its top level ran once, and its constant and function serve all four.
#[test]
fn a_module_made_before_the_threads_runs_its_top_level_once() {
    let rt = own_values_runtime(&[IMPORT], |engine| {
        let ast = engine.compile(MODULE).unwrap();
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).unwrap();
        let mut resolver = StaticModuleResolver::new();
        resolver.insert("numbers", module);
        engine.set_module_resolver(resolver);
    });
    assert_eq!(on_threads(rt, 4, IMPORT, 0), vec![Ended::With(2_450); 4]);
    let g = rt.gil.acquire();
    assert_eq!(tallied(&g, rt), (0, 1));
    assert!(rt.gil.stats().forced_drops > 0, "the scripts handed over");
}

// What fails: a hand-over while a value that another thread reaches is borrowed, or inside a
// module's first import.

/// A runtime that hands over while one of `values`, made shared, is borrowed.
fn shared_values_runtime(
    script: &'static str,
    values: impl FnOnce() -> Vec<(&'static str, Dynamic)>,
) -> &'static Runtime {
    let values = || {
        let values = values();
        values
            .into_iter()
            .map(|(n, v)| (n, v.into_shared()))
            .collect()
    };
    runtime(HandOver::WhileBorrowed, &[script], values, |_| {})
}

const SHARED_ARRAY: &str =
    "if me == 1 { for i in 0..100 { arr[0] += 1; } } else { arr[0] += 1; } arr[0]";

/// A shared array indexed, `arr[0] += 1`, stays borrowed across a progress call: the other
/// thread's evaluation, run there, cannot reach it.
#[test]
fn a_hand_over_inside_indexing_a_shared_array_fails_the_other_thread() {
    let rt = shared_values_runtime(SHARED_ARRAY, || {
        vec![("arr", Dynamic::from_array(vec![0_i64.into()]))]
    });
    assert_eq!(
        one_then_another(rt, SHARED_ARRAY),
        (Ended::With(100), Ended::DataRace)
    );
}

const SHARED_MAP: &str =
    "if me == 1 { for i in 0..100 { map.hits += 1; } } else { map.hits += 1; } map.hits";

/// The same with a shared map's property, `map.hits += 1`.
#[test]
fn a_hand_over_inside_a_shared_maps_property_fails_the_other_thread() {
    let rt = shared_values_runtime(SHARED_MAP, || {
        let mut map = rhai::Map::new();
        map.insert("hits".into(), 0_i64.into());
        vec![("map", Dynamic::from_map(map))]
    });
    assert_eq!(
        one_then_another(rt, SHARED_MAP),
        (Ended::With(100), Ended::DataRace)
    );
}

const SHARED_LIST_REDUCED: &str = "if me == 1 { list.reduce(|s, x| s + x, 0) } else { list.len() }";
const SHARED_LIST_SORTED: &str = "if me == 1 { list.sort(|a, b| a - b); } list[0]";

/// A shared list stays borrowed for the whole of a method call, the calls of its closure
/// included: `list.reduce(|s, x| ...)` and `list.sort(|a, b| ...)` hand over inside, and the
/// other thread cannot reach the list.
#[test]
fn a_hand_over_inside_a_shared_lists_method_call_fails_the_other_thread() {
    let list = || {
        let items = (1..=10_i64).rev().map(Dynamic::from).collect();
        vec![("list", Dynamic::from_array(items))]
    };
    let rt = shared_values_runtime(SHARED_LIST_REDUCED, list);
    assert_eq!(
        one_then_another(rt, SHARED_LIST_REDUCED),
        (Ended::With(55), Ended::DataRace)
    );
    let rt = shared_values_runtime(SHARED_LIST_SORTED, list);
    assert_eq!(
        one_then_another(rt, SHARED_LIST_SORTED),
        (Ended::With(1), Ended::DataRace)
    );
}

const SHARED_CLOSURE: &str = r"
    fn slow() { for i in 0..10 { this += 1; } }
    if me == 1 {
        let x = 0;
        let f = || x.slow();
        handler = f;
        f.call();
        x
    } else {
        let h = handler;
        h.call();
        0
    }
";

/// A closure that one thread made and both call: `x.slow()` keeps the variable it captured
/// borrowed across a progress call in one, and the other's call fails.
#[test]
fn a_hand_over_inside_a_method_on_a_captured_variable_fails_the_other_thread() {
    let rt = shared_values_runtime(SHARED_CLOSURE, || vec![("handler", Dynamic::UNIT)]);
    assert_eq!(
        one_then_another(rt, SHARED_CLOSURE),
        (Ended::With(10), Ended::DataRace)
    );
}

const SHARED_LOOP_VARIABLE: &str = r#"
    fn slow() { for i in 0..10 { this += 1; } }
    if me == 1 {
        for x in 0..100 { handler = || x.slow(); }
        1
    } else {
        loop { let h = handler; if type_of(h) == "Fn" { h.call(); break 2; } }
    }
"#;

/// A `for` loop's variable, captured by a closure that another thread calls: while that
/// thread is inside `x.slow()` on it, the loop cannot write the next value, and rhai panics.
/// (The hand-overs here are at every operation: the thread that must hand over first borrows
/// nothing.)
#[test]
fn a_for_loop_writing_a_variable_another_thread_borrows_panics() {
    let rt = runtime(
        HandOver::AtEveryOperation,
        &[SHARED_LOOP_VARIABLE],
        || vec![("handler", Dynamic::UNIT.into_shared())],
        |_| {},
    );
    let (first, second) = one_then_another(rt, SHARED_LOOP_VARIABLE);
    match first {
        Ended::Panicked(message) => assert!(message.contains("unwrap"), "{message}"),
        ended => panic!("the loop went on: {ended:?}"),
    }
    assert_eq!(second, Ended::With(2));
}

/// A module resolved from a file as it is imported: a hand-over inside its top level lets the
/// other thread import it too, before it is cached, and the top level runs once per import.
/// (Hand-overs at every operation: the top level borrows nothing shared.)
#[test]
fn a_hand_over_inside_a_file_modules_first_import_runs_it_again() {
    let dir = std::env::temp_dir().join(format!("gil-rhai-modules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("numbers.rhai"), MODULE).unwrap();
    let resolver = FileModuleResolver::new_with_path(&dir);
    let rt = runtime(HandOver::AtEveryOperation, &[IMPORT], Vec::new, |engine| {
        engine.set_module_resolver(resolver);
    });
    let ended = one_then_another(rt, IMPORT);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(ended, (Ended::With(2_450), Ended::With(2_450)));
    let g = rt.gil.acquire();
    assert_eq!(tallied(&g, rt), (0, 2));
}

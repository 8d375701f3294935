//! One Lua 5.4 state (mlua, without its `send` feature, so the state is `!Send`) shared by OS
//! threads through a `Gil`, as docs/embedding.md lays out: the state in a `GilBound`; a driver
//! that resumes each script on a coroutine and checkpoints between resumes; a line hook that
//! only asks `wants_checkpoint` and yields, at a statement boundary; host functions that block
//! inside a nested guard's region.
#![cfg(not(loom))]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use gil_std::{Blocking, Gil, GilBound, GilGuard};
use mlua::{Function, HookTriggers, Lua, VmState};

/// The lock and the interpreter behind it.
struct Engine {
    gil: &'static Gil,
    /// The state is built on `Rc`. `GilBound`'s contract: every handle to it (the `Lua`
    /// clones, functions and coroutines below) is used, cloned and dropped only while the
    /// thread holds `gil`, and kept across a checkpoint or a region only untouched.
    lua: GilBound<'static, Lua>,
}

/// A new engine with `script` loaded, and `sleep_ms(ms)`, a host function that sleeps in a
/// blocking region. Leaked: its threads may outlive a failing test.
fn engine(script: &str) -> &'static Engine {
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(Duration::from_millis(
        1,
    ))));
    let lua = {
        let _g = gil.acquire();
        let lua = Lua::new();
        let sleep_ms = lua
            .create_function(move |_, ms: u64| {
                // Called by a script the driver runs with the lock held: a nested guard, whose
                // sleep still lets the lock go.
                gil.ensure().sleep(Duration::from_millis(ms));
                Ok(())
            })
            .unwrap();
        lua.globals().set("sleep_ms", sleep_ms).unwrap();
        lua.load(script).exec().unwrap();
        lua
    };
    // SAFETY: the `Lua` handle and everything made from it are touched only under `gil` (see
    // `Engine::lua`); mlua's state is `!Send` for its `Rc`s, not for any tie to a thread.
    let lua = unsafe { GilBound::new(gil, lua) };
    Box::leak(Box::new(Engine { gil, lua }))
}

/// Why a script stopped early.
#[derive(Debug, PartialEq)]
enum Stopped {
    Interrupted,
}

/// Runs the global function `func(arg)` to its end on a coroutine of its own. Its line hook
/// yields whenever the lock wants a checkpoint (a statement boundary: a line, or a loop's jump
/// back), and the driver checkpoints between resumes, outside mlua's callbacks.
fn run(
    g: &mut GilGuard<'static>,
    engine: &'static Engine,
    func: &str,
    arg: i64,
) -> Result<(), Stopped> {
    // A handle of our own, so that the guard is free for the checkpoints.
    let lua = engine.lua.get(g).clone();
    let gil = engine.gil;
    let f: Function = lua.globals().get(func).unwrap();
    let co = lua.create_thread(f).unwrap();
    co.set_hook(HookTriggers::EVERY_LINE, move |_, _| {
        Ok(if gil.wants_checkpoint() {
            VmState::Yield
        } else {
            VmState::Continue
        })
    })
    .unwrap();
    co.resume::<()>(arg).unwrap();
    while co.is_resumable() {
        g.checkpoint().map_err(|_| Stopped::Interrupted)?;
        co.resume::<()>(()).unwrap();
    }
    Ok(())
}

const COUNTER: &str = r#"
    counter = 0
    function bump(n)
        for i = 1, n do
            counter = counter + 1
        end
    end
    function spin_until_stopped()
        while not stop do end
    end
    function spin()
        while true do end
    end
    function nap(ms)
        sleep_ms(ms)
    end
"#;

/// Four threads bump one Lua global; the lock moves between them mid-script (a 1 ms interval),
/// only at statement boundaries, so no update is lost.
#[test]
fn four_threads_share_one_lua_state_and_lose_no_update() {
    let engine = engine(COUNTER);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut g = engine.gil.acquire();
                run(&mut g, engine, "bump", 200_000).unwrap();
            });
        }
    });
    let g = engine.gil.acquire();
    let counter: i64 = engine.lua.get(&g).globals().get("counter").unwrap();
    assert_eq!(counter, 800_000);
    assert!(
        engine.gil.stats().forced_drops > 0,
        "the scripts were preempted"
    );
}

/// A host function that sleeps lets another thread run Lua meanwhile.
#[test]
fn a_host_function_sleeps_without_the_lock() {
    static NAPPING: AtomicBool = AtomicBool::new(false);
    let engine = engine(COUNTER);
    let gil = engine.gil;
    {
        let g = gil.acquire();
        let lua = engine.lua.get(&g);
        let nap = lua
            .create_function(move |_, ms: u64| {
                let mut inner = gil.ensure();
                // SAFETY: the closure sleeps and sets an atomic: nothing under the lock.
                unsafe {
                    inner.allow_threads(|| {
                        NAPPING.store(true, SeqCst);
                        thread::sleep(Duration::from_millis(ms));
                        NAPPING.store(false, SeqCst);
                    })
                };
                Ok(())
            })
            .unwrap();
        lua.globals().set("sleep_ms", nap).unwrap();
    }
    thread::scope(|s| {
        s.spawn(|| {
            let mut g = gil.acquire();
            run(&mut g, engine, "nap", 300).unwrap();
        });
        while !NAPPING.load(SeqCst) {
            thread::yield_now();
        }
        let mut g = gil.acquire();
        run(&mut g, engine, "bump", 10).unwrap();
        assert!(NAPPING.load(SeqCst), "ran Lua while the other thread slept");
    });
}

/// A runaway script is stopped by an interrupt: its hook yields for it, and the driver's
/// checkpoint reports it.
#[test]
fn an_interrupt_stops_a_runaway_script() {
    let engine = engine(COUNTER);
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let mut g = engine.gil.acquire();
        tx.send(engine.gil.interrupt_handle()).unwrap();
        run(&mut g, engine, "spin", 0)
    });
    rx.recv().unwrap().interrupt();
    assert_eq!(runner.join().unwrap(), Err(Stopped::Interrupted));
}

/// A pending call sets a Lua global that a running script waits for: the hook yields for the
/// call, and the driver's checkpoint runs it.
#[test]
fn a_pending_call_reaches_a_running_script() {
    let engine = engine(COUNTER);
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let mut g = engine.gil.acquire();
        tx.send(()).unwrap(); // holding: the call runs at one of this thread's checkpoints
        run(&mut g, engine, "spin_until_stopped", 0)
    });
    rx.recv().unwrap();
    engine
        .gil
        .add_pending_call(move |g| engine.lua.get(g).globals().set("stop", true).unwrap())
        .unwrap();
    assert_eq!(runner.join().unwrap(), Ok(()));
}

/// A host function that reads a line from a socket lets another thread run Lua while it
/// waits: the server sends the line only once the other thread has run a script.
#[test]
fn a_socket_read_runs_without_the_lock() {
    static READING: AtomicBool = AtomicBool::new(false);
    let engine = engine(COUNTER);
    let gil = engine.gil;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    {
        let g = gil.acquire();
        let lua = engine.lua.get(&g);
        let read_line = lua
            .create_function(move |_, port: u16| {
                let mut inner = gil.ensure();
                // SAFETY: the closure owns the socket, sets an atomic and gives back a Rust
                // `String`: nothing under the lock, no Lua value.
                let line = unsafe {
                    inner.allow_threads(move || {
                        let mut stream = BufReader::new(TcpStream::connect(("127.0.0.1", port))?);
                        READING.store(true, SeqCst);
                        let mut line = String::new();
                        stream.read_line(&mut line)?;
                        READING.store(false, SeqCst);
                        Ok::<_, std::io::Error>(line)
                    })
                }?;
                Ok(line.trim_end().to_string())
            })
            .unwrap();
        lua.globals().set("read_line", read_line).unwrap();
        lua.load("function fetch(port) line = read_line(port) end")
            .exec()
            .unwrap();
    }
    let (ran, wait_ran) = mpsc::channel::<()>();
    thread::scope(|s| {
        s.spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            wait_ran.recv().unwrap();
            conn.write_all(b"hello from the socket\n").unwrap();
        });
        s.spawn(move || {
            let mut g = gil.acquire();
            run(&mut g, engine, "fetch", i64::from(port)).unwrap();
        });
        while !READING.load(SeqCst) {
            thread::yield_now();
        }
        let mut g = gil.acquire();
        run(&mut g, engine, "bump", 10).unwrap();
        assert!(READING.load(SeqCst), "ran Lua while the other thread read");
        drop(g);
        ran.send(()).unwrap();
    });
    let g = gil.acquire();
    let line: String = engine.lua.get(&g).globals().get("line").unwrap();
    assert_eq!(line, "hello from the socket");
}

/// Four endless loops on one state, stopped by a pending call: each thread gets its turns,
/// and every loop makes progress (the lab measures how evenly: Jain's index).
#[test]
fn four_endless_loops_all_make_progress() {
    let engine = engine(
        r#"
        counts = {0, 0, 0, 0}
        function loop_forever(i)
            while not stop do counts[i] = counts[i] + 1 end
        end
    "#,
    );
    let gil = engine.gil;
    thread::scope(|s| {
        for i in 1..=4 {
            s.spawn(move || {
                let mut g = gil.acquire();
                run(&mut g, engine, "loop_forever", i).unwrap();
            });
        }
        thread::sleep(Duration::from_millis(200));
        gil.add_pending_call(move |g| engine.lua.get(g).globals().set("stop", true).unwrap())
            .unwrap();
    });
    let g = gil.acquire();
    let counts: Vec<i64> = engine.lua.get(&g).globals().get("counts").unwrap();
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

/// A coroutine that its hook made yield is stopped mid-function, its locals live on its stack:
/// a full collection while it waits to be resumed (another thread's allocations, here forced)
/// must leave them alone, or the count comes back wrong or fails on a `nil` local. The binding
/// must keep the stack of a coroutine suspended this way (mlua does from 0.12).
#[test]
fn a_coroutine_stopped_by_its_hook_keeps_its_locals_through_a_collection() {
    let lua = Lua::new();
    lua.load("function count(n) local x = 0 for i = 1, n do x = x + 1 end return x end")
        .exec()
        .unwrap();
    let count: Function = lua.globals().get("count").unwrap();
    let co = lua.create_thread(count).unwrap();
    co.set_hook(HookTriggers::new().every_nth_instruction(1_000), |_, _| {
        Ok(VmState::Yield)
    })
    .unwrap();
    let mut result: Option<i64> = co.resume(100_000).unwrap();
    let mut yields = 0;
    while co.is_resumable() {
        yields += 1;
        lua.gc_collect().unwrap();
        result = co.resume(()).unwrap();
    }
    assert!(yields > 100, "the hook stopped it {yields} times");
    assert_eq!(result, Some(100_000));
}

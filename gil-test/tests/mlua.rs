//! One Lua 5.4 state (mlua, without its `send` feature, so the state is `!Send`) shared by OS
//! threads through a `Gil`, as docs/embedding.md lays out: the state in a `GilBound`; a driver
//! that resumes each script on a coroutine, and the only place where the lock changes hands; a
//! line hook that only asks `wants_checkpoint` and yields, at a statement boundary; blocking
//! host functions that yield a request to the driver, which blocks in its own region and
//! resumes the script with the answer.
//!
//! No mlua callback lets the lock go. mlua sets its "current state" as a callback enters and
//! puts back the one it found as the callback returns, which is right only while callbacks
//! return in the reverse order of their entry; two threads' host calls, each letting the lock
//! go inside, can return in the other order.
#![cfg(not(loom))]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use gil_std::{Gil, GilBound, GilGuard};
use mlua::{
    FromLuaMulti, Function, HookTriggers, IntoLuaMulti, Lua, MultiValue, Thread, UserData, Value,
    VmState, thread::ThreadStatus,
};

/// The lock and the interpreter behind it.
struct Engine {
    gil: &'static Gil,
    /// The state is built on `Rc`. `GilBound`'s contract: every handle to it (the `Lua`
    /// clones, functions and coroutines below) is used, cloned and dropped only while the
    /// thread holds `gil`, and kept across a checkpoint or a region only untouched.
    lua: GilBound<'static, Lua>,
}

/// A blocking call that a script asks its driver to make: the blocking part, owning all it
/// needs. `Send`, so it holds no Lua value; it gives back a Rust value, which the driver turns
/// into a Lua value once it holds the lock again.
struct Request(Box<dyn FnOnce() -> Answer + Send>);

impl UserData for Request {}

/// What a blocking call gives back to the script.
enum Answer {
    Nothing,
    Integer(i64),
    Text(String),
    Failed(String),
}

/// Makes the global `name(...)` a blocking host function. The Rust part, `ask`, only builds the
/// request and returns; a Lua wrapper yields it to the driver (a Rust callback cannot yield)
/// and returns what the driver resumes the coroutine with.
fn register_blocking<A: FromLuaMulti + 'static>(
    lua: &Lua,
    name: &str,
    ask: impl Fn(A) -> Request + 'static,
) {
    let ask = lua
        .create_function(move |_, args: A| Ok(ask(args)))
        .unwrap();
    let blocking: Function = lua
        .load("local ask = ... return function(...) return coroutine.yield(ask(...)) end")
        .call(ask)
        .unwrap();
    lua.globals().set(name, blocking).unwrap();
}

/// A new engine with `script` loaded, and `sleep_ms(ms)`, a blocking host function. Leaked: its
/// threads may outlive a failing test.
fn engine(script: &str) -> &'static Engine {
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(Duration::from_millis(
        1,
    ))));
    let lua = {
        let _g = gil.acquire();
        let lua = Lua::new();
        register_blocking(&lua, "sleep_ms", |ms: u64| {
            Request(Box::new(move || {
                thread::sleep(Duration::from_millis(ms));
                Answer::Nothing
            }))
        });
        lua.load(script).exec().unwrap();
        lua
    };
    // SAFETY: the `Lua` handle and everything made from it are touched only under `gil` (see
    // `Engine::lua`); mlua's state is `!Send` for its `Rc`s, not for any tie to a thread: no
    // callback lets the lock go, so its current state is the same whenever the lock changes
    // hands.
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
/// back), and a blocking host function yields a request. Between resumes, outside every mlua
/// callback, the driver checkpoints or makes the blocking call in its own region.
fn run(
    g: &mut GilGuard<'static>,
    engine: &'static Engine,
    func: &str,
    arg: i64,
) -> Result<(), Stopped> {
    // A handle of our own, so that the guard is free for the checkpoints and regions.
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
    let mut yielded: MultiValue = co.resume(arg).unwrap();
    while co.is_resumable() {
        yielded = match request(&yielded) {
            // The region's closure owns what the call needs: no Lua value, no guard.
            Some(Request(call)) => co.resume(g.allow_threads(call)),
            None => {
                g.checkpoint().map_err(|_| Stopped::Interrupted)?;
                co.resume(())
            }
        }
        .unwrap();
    }
    Ok(())
}

/// The request a blocking host function yielded, if that is what the coroutine yielded (its
/// hook yields nothing).
fn request(yielded: &MultiValue) -> Option<Request> {
    match (yielded.len(), yielded.front()) {
        (1, Some(Value::UserData(ud))) if ud.is::<Request>() => Some(ud.take().unwrap()),
        _ => None,
    }
}

impl IntoLuaMulti for Answer {
    fn into_lua_multi(self, lua: &Lua) -> mlua::Result<MultiValue> {
        match self {
            Answer::Nothing => ().into_lua_multi(lua),
            Answer::Integer(n) => n.into_lua_multi(lua),
            Answer::Text(text) => text.into_lua_multi(lua),
            Answer::Failed(why) => (Value::Nil, why).into_lua_multi(lua),
        }
    }
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

/// A script that sleeps in a host function lets another thread run Lua meanwhile: the driver
/// sleeps for it, without the lock.
#[test]
fn a_host_function_sleeps_without_the_lock() {
    static NAPPING: AtomicBool = AtomicBool::new(false);
    let engine = engine(COUNTER);
    let gil = engine.gil;
    {
        let g = gil.acquire();
        register_blocking(engine.lua.get(&g), "sleep_ms", |ms: u64| {
            Request(Box::new(move || {
                NAPPING.store(true, SeqCst);
                thread::sleep(Duration::from_millis(ms));
                NAPPING.store(false, SeqCst);
                Answer::Nothing
            }))
        });
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

/// A script that reads a line from a socket in a host function lets another thread run Lua
/// while it waits: the server sends the line only once the other thread has run a script.
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
        register_blocking(lua, "read_line", |port: u16| {
            Request(Box::new(move || {
                let read = || {
                    let mut stream = BufReader::new(TcpStream::connect(("127.0.0.1", port))?);
                    READING.store(true, SeqCst);
                    let mut line = String::new();
                    stream.read_line(&mut line)?;
                    READING.store(false, SeqCst);
                    Ok::<_, std::io::Error>(line.trim_end().to_string())
                };
                match read() {
                    Ok(line) => Answer::Text(line),
                    Err(e) => Answer::Failed(e.to_string()),
                }
            }))
        });
        lua.load("function fetch(port) line, failed = read_line(port) end")
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
    let globals = engine.lua.get(&g).globals();
    assert_eq!(globals.get::<Option<String>>("failed").unwrap(), None);
    assert_eq!(
        globals.get::<String>("line").unwrap(),
        "hello from the socket"
    );
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

/// A host call held at a gate: it says when it is in flight, and goes on when the gate opens.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    waiting: bool,
    open: bool,
}

/// How long a test waits for a step of another thread before it fails instead of hanging.
const HANG: Duration = Duration::from_secs(60);

impl Gate {
    fn new() -> &'static Gate {
        Box::leak(Box::new(Gate {
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        }))
    }

    /// Says the call is in flight, and waits until the gate opens. Runs without the lock.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.waiting = true;
        self.changed.notify_all();
        let _open = self.changed.wait_while(state, |s| !s.open).unwrap();
    }

    fn wait_until_in_flight(&self) {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, HANG, |s| !s.waiting)
            .unwrap();
        assert!(state.waiting, "the host call never came to its gate");
    }

    fn open(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }
}

/// Where a blocking host function blocks.
#[derive(Clone, Copy)]
enum HostBlocks {
    /// The driver makes the call, in its own region (docs/embedding.md).
    InTheDriver,
    /// The host function takes `gil.ensure()` and makes the call in that guard's region,
    /// inside mlua's callback.
    InsideTheCallback,
}

/// What two scripts got from their host calls, and what became of their coroutines.
#[derive(Debug, PartialEq)]
struct TwoCalls {
    /// `call(i)` returns `10 * i`; each script keeps what it got.
    got: [Option<i64>; 2],
    /// Each script's coroutine, once both drivers are done.
    coroutines: [ThreadStatus; 2],
    /// Each driver's panic, if it panicked.
    panics: [Option<String>; 2],
}

/// Two scripts, on two threads, each in a host call `call(i)` at once; the first call returns
/// while the second is still in flight, so the calls return in the order they entered, not the
/// reverse. The gates make the order: A enters, B enters, A returns and its script ends, B
/// returns.
fn two_host_calls_in_flight(blocks: HostBlocks) -> TwoCalls {
    let engine = engine(
        r#"
        got, coroutines = {}, {}
        function script(i)
            coroutines[i] = coroutine.running()
            got[i] = call(i)
        end
    "#,
    );
    let gil = engine.gil;
    let gates = [Gate::new(), Gate::new()];
    {
        let g = gil.acquire();
        let lua = engine.lua.get(&g);
        match blocks {
            HostBlocks::InTheDriver => register_blocking(lua, "call", move |i: usize| {
                Request(Box::new(move || {
                    gates[i - 1].pass();
                    Answer::Integer(10 * i as i64)
                }))
            }),
            HostBlocks::InsideTheCallback => {
                let call = lua
                    .create_function(move |_, i: usize| {
                        let mut inner = gil.ensure();
                        // SAFETY: the closure waits at a gate, a std mutex and condition
                        // variable that nothing under the lock reaches.
                        unsafe { inner.allow_threads(|| gates[i - 1].pass()) };
                        Ok(10 * i as i64)
                    })
                    .unwrap();
                lua.globals().set("call", call).unwrap();
            }
        }
    }
    let driver = |i: i64| {
        thread::spawn(move || {
            let mut g = gil.acquire();
            run(&mut g, engine, "script", i).unwrap();
        })
    };
    let panicked = |joined: thread::Result<()>| {
        joined.err().map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    };
    let a = driver(1);
    gates[0].wait_until_in_flight();
    let b = driver(2);
    gates[1].wait_until_in_flight();
    gates[0].open();
    let a = panicked(a.join());
    gates[1].open();
    let b = panicked(b.join());

    let g = gil.acquire();
    let globals = engine.lua.get(&g).globals();
    let got: mlua::Table = globals.get("got").unwrap();
    let coroutines: mlua::Table = globals.get("coroutines").unwrap();
    let status = |i: i64| coroutines.get::<Thread>(i).unwrap().status();
    TwoCalls {
        got: [got.get(1).unwrap(), got.get(2).unwrap()],
        coroutines: [status(1), status(2)],
        panics: [a, b],
    }
}

/// Two host calls in flight at once, the first returning first: each script gets its own
/// answer, both coroutines finish, and no driver panics. The driver makes both calls, outside
/// every mlua callback.
#[test]
fn two_host_calls_in_flight_return_in_either_order() {
    let calls = two_host_calls_in_flight(HostBlocks::InTheDriver);
    assert_eq!(
        calls,
        TwoCalls {
            got: [Some(10), Some(20)],
            coroutines: [ThreadStatus::Finished, ThreadStatus::Finished],
            panics: [None, None],
        }
    );
}

/// The same calls, each letting the lock go inside mlua's callback, break mlua: the first
/// returns while mlua's current state is the second's coroutine, and the second, returning,
/// puts back the first's coroutine as current. Answers go to the wrong script, the first
/// coroutine stays `Running`, the second driver panics in mlua ("too many stack values
/// popped"), and once the first coroutine is collected mlua works on a freed `lua_State`.
/// Ignored, as memory is corrupt from there on: run by hand to see it fail.
#[test]
#[ignore = "corrupts mlua's state; shows why no mlua callback may let the lock go"]
fn two_host_calls_letting_the_lock_go_inside_the_callback_break_mlua() {
    let calls = two_host_calls_in_flight(HostBlocks::InsideTheCallback);
    assert_eq!(
        calls,
        TwoCalls {
            got: [Some(10), Some(20)],
            coroutines: [ThreadStatus::Finished, ThreadStatus::Finished],
            panics: [None, None],
        }
    );
}

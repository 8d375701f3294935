//! The Lua workload: a real engine (mlua, Lua 5.4) behind a `Gil`, as docs/embedding.md binds
//! it. Each run calls a Lua function that counts in a loop, on a coroutine, chunk after chunk,
//! for a fixed time; its figure is loop iterations per second, and Lua VM instructions per
//! second with the loop's instructions per iteration (counted once, with a hook on every
//! instruction).
//!
//! - **The hook's cost**: one thread, no other thread on the lock, with a count hook every
//!   10,000 or 1,000 instructions that asks [`Gil::wants_checkpoint`] — against no hook, and
//!   against a hook every 1,000 instructions that only returns. Lua 5.4 looks at its hook
//!   count at every instruction while a count hook is set, whatever the count: that look is
//!   the hook's cost, the call is the part the lock adds.
//! - **Sharing**: four threads share one state under the `Gil`, each resuming its own
//!   coroutine; the hook (every 1,000 instructions) yields when the lock wants a checkpoint,
//!   and the driver checkpoints between resumes. Their iterations per second together,
//!   against one thread without a lock; and Jain's fairness index over the four.

use std::thread;
use std::time::{Duration, Instant};

use gil_std::{Gil, GilBound};
use mlua::{Function, HookTriggers, Lua, VmState};

/// Loop iterations per call of `count`.
const CHUNK: i64 = 100_000;

const SCRIPT: &str = r#"
    function count(n)
        local x = 0
        for i = 1, n do x = x + 1 end
        return x
    end
"#;

/// One run's figures.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Loop iterations per second, all threads together.
    pub rate: f64,
    /// Jain's fairness index over the threads' iterations (1 for one thread).
    pub jain: f64,
}

/// The workload's figures.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// Lua VM instructions per loop iteration.
    pub instructions_per_iteration: f64,
    /// One thread, no lock, no hook.
    pub alone: Run,
    /// One thread, no lock, a hook every 1,000 instructions that only returns.
    pub empty_hook_1k: Run,
    /// One thread holding the `Gil`, a hook every 10,000 instructions asking `wants_checkpoint`.
    pub hook_10k: Run,
    /// The same, every 1,000 instructions.
    pub hook_1k: Run,
    /// Four threads sharing one state under the `Gil`, the hook every 1,000 instructions.
    pub shared_4: Run,
}

impl Figures {
    /// Lua instructions per second of `run`.
    pub fn instructions(&self, run: Run) -> f64 {
        run.rate * self.instructions_per_iteration
    }
}

/// Runs the workload, each run for `time`.
pub fn run(time: Duration) -> Figures {
    Figures {
        instructions_per_iteration: instructions_per_iteration(),
        alone: alone(time),
        empty_hook_1k: empty_hook(1_000, time),
        hook_10k: hooked(10_000, time),
        hook_1k: hooked(1_000, time),
        shared_4: shared(4, 1_000, time),
    }
}

fn state() -> Lua {
    let lua = Lua::new();
    lua.load(SCRIPT)
        .exec()
        .expect("the workload's script loads");
    lua
}

/// Lua instructions per iteration of `count`'s loop: a hook on every instruction counts two
/// calls, and the difference is divided by the difference in iterations.
fn instructions_per_iteration() -> f64 {
    let lua = state();
    let count: Function = lua.globals().get("count").expect("count");
    let executed = |n: i64| {
        let seen = std::rc::Rc::new(std::cell::Cell::new(0_u64));
        let tally = seen.clone();
        lua.set_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
            tally.set(tally.get() + 1);
            Ok(VmState::Continue)
        })
        .expect("a hook");
        count.call::<i64>(n).expect("count runs");
        lua.remove_hook();
        seen.get()
    };
    let (few, many) = (executed(1_000), executed(11_000));
    (many - few) as f64 / 10_000.0
}

/// One thread, no lock, no hook.
fn alone(time: Duration) -> Run {
    let lua = state();
    let count: Function = lua.globals().get("count").expect("count");
    let start = Instant::now();
    let mut chunks = 0_u64;
    while start.elapsed() < time {
        let co = lua.create_thread(count.clone()).expect("a coroutine");
        co.resume::<i64>(CHUNK).expect("count runs");
        chunks += 1;
    }
    Run {
        rate: rate(&[chunks], start.elapsed()),
        jain: 1.0,
    }
}

/// One thread, no lock, with a hook every `every` instructions that only returns.
fn empty_hook(every: u32, time: Duration) -> Run {
    let lua = state();
    let count: Function = lua.globals().get("count").expect("count");
    let start = Instant::now();
    let mut chunks = 0_u64;
    while start.elapsed() < time {
        let co = lua.create_thread(count.clone()).expect("a coroutine");
        co.set_hook(HookTriggers::new().every_nth_instruction(every), |_, _| {
            Ok(VmState::Continue)
        })
        .expect("a hook");
        co.resume::<i64>(CHUNK).expect("count runs");
        chunks += 1;
    }
    Run {
        rate: rate(&[chunks], start.elapsed()),
        jain: 1.0,
    }
}

/// One thread holding a `Gil` nobody else wants, with the hook every `every` instructions.
fn hooked(every: u32, time: Duration) -> Run {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let mut g = gil.acquire();
    let lua = state();
    let count: Function = lua.globals().get("count").expect("count");
    let start = Instant::now();
    let mut chunks = 0_u64;
    while start.elapsed() < time {
        drive(gil, &lua, &count, every, &mut g);
        chunks += 1;
    }
    Run {
        rate: rate(&[chunks], start.elapsed()),
        jain: 1.0,
    }
}

/// One chunk on a coroutine of its own: its hook, every `every` instructions, yields when the
/// lock wants a checkpoint, and the driver checkpoints between resumes.
fn drive(
    gil: &'static Gil,
    lua: &Lua,
    count: &Function,
    every: u32,
    g: &mut gil_std::GilGuard<'_>,
) {
    let co = lua.create_thread(count.clone()).expect("a coroutine");
    co.set_hook(
        HookTriggers::new().every_nth_instruction(every),
        move |_, _| {
            Ok(if gil.wants_checkpoint() {
                VmState::Yield
            } else {
                VmState::Continue
            })
        },
    )
    .expect("a hook");
    co.resume::<()>(CHUNK).expect("count runs");
    while co.is_resumable() {
        g.checkpoint().expect("no interrupts in the lab");
        co.resume::<()>(()).expect("count runs");
    }
}

/// `threads` threads sharing one state under a `Gil`, the hook every `every` instructions.
fn shared(threads: usize, every: u32, time: Duration) -> Run {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let lua = {
        let _g = gil.acquire();
        state()
    };
    // SAFETY: the `Lua` handle and everything made from it are used, cloned and dropped only by
    // a thread holding `gil` (each thread below takes its clone under the lock and drops it
    // before letting go); mlua's state is `!Send` for its `Rc`s, not for a tie to a thread.
    let lua = unsafe { GilBound::new(gil, lua) };
    let start = Instant::now();
    let chunks: Vec<u64> = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut g = gil.acquire();
                    let lua = lua.get(&g).clone();
                    let count: Function = lua.globals().get("count").expect("count");
                    let mut chunks = 0_u64;
                    while start.elapsed() < time {
                        drive(gil, &lua, &count, every, &mut g);
                        chunks += 1;
                    }
                    drop((count, lua));
                    drop(g);
                    chunks
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker"))
            .collect()
    });
    let elapsed = start.elapsed();
    let _g = gil.acquire();
    drop(lua.into_inner());
    Run {
        rate: rate(&chunks, elapsed),
        jain: super::jain(&chunks),
    }
}

/// Iterations per second, all threads together.
fn rate(chunks: &[u64], elapsed: Duration) -> f64 {
    chunks.iter().sum::<u64>() as f64 * CHUNK as f64 / elapsed.as_secs_f64()
}

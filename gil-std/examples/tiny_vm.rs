//! tiny_vm — a small bytecode interpreter whose threads share one interpreter state behind a
//! `Gil`, the way CPython's threads share the interpreter.
//!
//! - The dispatch loop calls `checkpoint()` at every backward jump, as CPython checks its eval
//!   breaker: a drop request hands the lock on there, so the instructions between two jumps
//!   (here, `load; push 1; add; store`) run without another thread in between.
//! - The I/O builtin `sleep` runs inside `allow_threads`: other threads run meanwhile.
//! - An interrupt (Ctrl-C, say) reaches the thread at its next checkpoint; the VM stops with
//!   `VmError::Interrupted`, like Python's `KeyboardInterrupt`.
//! - A pending call queued from outside (a signal handler's job) runs on whichever thread holds
//!   the interpreter.
//!
//! ```text
//! cargo run --release -p gil-std --example tiny_vm
//! ```

use std::cell::RefCell;
use std::time::Duration;

use gil_std::{Gil, GilCell, GilGuard, Interrupted};

/// One instruction.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// Push a constant.
    Push(i64),
    /// Pop two, push their sum.
    Add,
    /// Push a copy of the top.
    Dup,
    /// Drop the top.
    Pop,
    /// Push a global.
    Load(usize),
    /// Pop into a global.
    Store(usize),
    /// Pop; jump to the target if it was not zero. A backward jump is a checkpoint.
    JumpIfNonZero(usize),
    /// The I/O builtin: sleep this many microseconds, without the lock.
    Sleep(u64),
    /// Stop.
    Halt,
}

/// What every thread of the VM shares: only reachable under the lock.
#[derive(Debug, Default)]
pub struct Interpreter {
    /// The globals.
    pub globals: Vec<i64>,
    /// Instructions executed, all threads together.
    pub executed: u64,
}

/// Why a program stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum VmError {
    /// The thread was interrupted (the VM's `KeyboardInterrupt`).
    Interrupted,
    /// The program popped an empty stack.
    StackUnderflow(usize),
}

impl From<Interrupted> for VmError {
    fn from(_: Interrupted) -> Self {
        VmError::Interrupted
    }
}

/// Runs `program` on the calling thread, which must hold the interpreter's lock through
/// `guard`. The stack and program counter are this thread's; the globals are shared.
pub fn run(
    guard: &mut GilGuard<'_>,
    state: &GilCell<'_, RefCell<Interpreter>>,
    program: &[Op],
) -> Result<(), VmError> {
    let mut stack: Vec<i64> = Vec::new();
    let mut pc = 0;
    let pop = |stack: &mut Vec<i64>, pc| stack.pop().ok_or(VmError::StackUnderflow(pc));
    while let Some(&op) = program.get(pc) {
        state.get(guard).borrow_mut().executed += 1;
        pc += 1;
        match op {
            Op::Push(v) => stack.push(v),
            Op::Add => {
                let (b, a) = (pop(&mut stack, pc)?, pop(&mut stack, pc)?);
                stack.push(a + b);
            }
            Op::Dup => {
                let top = pop(&mut stack, pc)?;
                stack.extend([top, top]);
            }
            Op::Pop => drop(pop(&mut stack, pc)?),
            Op::Load(g) => stack.push(state.get(guard).borrow().globals[g]),
            Op::Store(g) => {
                let v = pop(&mut stack, pc)?;
                state.get(guard).borrow_mut().globals[g] = v;
            }
            Op::JumpIfNonZero(target) => {
                if pop(&mut stack, pc)? != 0 {
                    if target < pc {
                        // The eval breaker: hand over if asked, run pending calls, and stop
                        // here if this thread was interrupted.
                        guard.checkpoint()?;
                    }
                    pc = target;
                }
            }
            Op::Sleep(micros) => {
                guard.allow_threads(|| std::thread::sleep(Duration::from_micros(micros)));
            }
            Op::Halt => break,
        }
    }
    Ok(())
}

/// A program that adds 1 to global `counter` `times` times (rounded down to a multiple of
/// `sleep_every`), sleeping `sleep_us` every `sleep_every` rounds. Its loop counters are on its
/// own stack; only the counter is shared.
pub fn counting_program(counter: usize, times: i64, sleep_every: i64, sleep_us: u64) -> Vec<Op> {
    assert!(times > 0 && sleep_every > 0);
    let outer = times / sleep_every;
    vec![
        Op::Push(outer),
        // 1: outer loop head; stack: [outer_left]
        Op::Push(sleep_every),
        // 2: inner loop head; stack: [outer_left, inner_left]
        Op::Load(counter),
        Op::Push(1),
        Op::Add,
        Op::Store(counter),
        Op::Push(-1),
        Op::Add,
        Op::Dup,
        Op::JumpIfNonZero(2),
        Op::Pop,
        Op::Sleep(sleep_us),
        Op::Push(-1),
        Op::Add,
        Op::Dup,
        Op::JumpIfNonZero(1),
        Op::Halt,
    ]
}

/// An endless loop (for interrupting).
pub fn spin_program() -> Vec<Op> {
    vec![Op::Push(1), Op::JumpIfNonZero(0)]
}

/// Runs `threads` threads of [`counting_program`] against one interpreter and returns the
/// counter and the lock's switch count.
pub fn count_together(threads: usize, times: i64) -> (i64, u32) {
    let gil = Gil::with_switch_interval(Duration::from_micros(200));
    let state = GilCell::new(
        &gil,
        RefCell::new(Interpreter {
            globals: vec![0; 1],
            executed: 0,
        }),
    );
    let program = counting_program(0, times, 1_000, 50);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| run(&mut gil.acquire(), &state, &program).unwrap());
        }
    });
    let counter = state.get(&gil.acquire()).borrow().globals[0];
    (counter, gil.stats().switches)
}

/// Interrupts a thread stuck in an endless loop; returns what its `run` returned and the
/// instructions it executed.
pub fn interrupt_a_loop() -> (Result<(), VmError>, u64) {
    let gil = Gil::new();
    let state = GilCell::new(&gil, RefCell::new(Interpreter::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::scope(|s| {
        let vm = s.spawn(|| {
            let mut guard = gil.acquire();
            tx.send(gil.interrupt_handle()).unwrap();
            run(&mut guard, &state, &spin_program())
        });
        let handle = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        handle.interrupt(); // Ctrl-C
        vm.join().unwrap()
    });
    let executed = state.get(&gil.acquire()).borrow().executed;
    (outcome, executed)
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    let (threads, times) = (4, 20_000);
    let (counter, switches) = count_together(threads, times);
    println!(
        "{threads} threads each added 1 to a shared global {times} times: it reads {counter} \
         (expected {}), with {switches} switches of the lock",
        threads as i64 * times
    );
    let (outcome, executed) = interrupt_a_loop();
    println!("an endless loop interrupted after 5 ms: {outcome:?} after {executed} instructions");

    // A pending call from outside: runs on the thread that holds the interpreter.
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let state: &'static GilCell<'static, RefCell<Interpreter>> = Box::leak(Box::new(GilCell::new(
        gil,
        RefCell::new(Interpreter {
            globals: vec![0; 1],
            executed: 0,
        }),
    )));
    let mut guard = gil.acquire();
    std::thread::spawn(move || {
        gil.add_pending_call(move |g| state.get(g).borrow_mut().globals[0] += 1_000)
            .unwrap();
    })
    .join()
    .unwrap();
    run(&mut guard, state, &counting_program(0, 10, 5, 1)).unwrap();
    println!(
        "a pending call added 1000 at the program's first checkpoint, the program 10: {}",
        state.get(&guard).borrow().globals[0]
    );
}

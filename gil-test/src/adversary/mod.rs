//! The red team: an adversarial fuzzer of `gil_std`'s safe API. Input bytes decode to a
//! program ([`Program`]) of several threads doing what safe code may do with two locks: take
//! them every way there is, nest `ensure` guards, checkpoint, yield, ask for drops, close,
//! open blocking regions of every form, forget, leak, swap and replace guards, poll
//! `acquire_async` futures from any thread with wakers that poll inline, install hooks,
//! handlers and pending calls that take locks and keep guards in thread-locals, panic at every
//! point, and drop a `Gil` once its borrows end to put another in its place. A conductor runs
//! the steps in the program's order, and oracles judge the run ([`Oracle`]):
//!
//! - **mutual exclusion**: a shadow owner per lock, claimed in each critical section and, by
//!   each thread, for as long as it believes it holds the lock between steps; and a plain
//!   counter behind each lock that must equal the increments made;
//! - **guards prove their hold**: after each step every guard's lock is held by its thread,
//!   and no lock is held with no guard left (unless one was leaked);
//! - **no unexpected panic**: a panic is allowed only from a misuse the lock documents (an
//!   acquire on a thread that holds the lock, a region opened under a nested guard, a guard of
//!   a lock taken inside its own hook, ...) or planned by the fuzzer;
//! - **no hang** unless the contract allows it: the threads stuck wait for something leaked (a
//!   forgotten guard, token or future), or for each other around a lock-order cycle, or, an
//!   executor, for a lock one of its own unpolled futures was handed; every other wait that
//!   cannot end must panic instead. A watchdog ([`LIMIT`]) calls the hang, and the threads left
//!   behind use only leaked (`'static`) state;
//! - **no stray drop request**: a lock with an hour's interval that nothing asks to drop is
//!   never asked.
//!
//! The input also fixes the schedule: the conductor starts the steps in the program's order and
//! waits for each to finish, or a moment if it blocks, so a failing input replays (and
//! shrinks) the same way as far as the lock's own timing allows.
//!
//! Only the safe API is used, as a black box. What only the old API can do (reaching the
//! guard inside an `EnsureGuard`) is built with `--cfg gil_old_api`.
//!
//! Used by the property test `tests/adversary.rs` (proptest, with the shrunk inputs of past
//! findings replayed, a handful of cases for Miri, and an ignored long hunt) and by the
//! cargo-fuzz target `adversary`.
//!
//! ```
//! gil_test::adversary::quiet_panics();
//! // Two threads; thread 0 acquires A, touches it and drops the guard.
//! let steps = [[0, 3, 0, 0], [0, 0, 0, 0], [0, 8, 0, 0]];
//! let mut input = vec![0; gil_test::adversary::HEADER];
//! input.extend(steps.concat());
//! let report = gil_test::adversary::run(&input).unwrap();
//! assert_eq!(report.increments, 1);
//! ```

mod callbacks;
mod conductor;
mod local;
#[cfg(gil_old_api)]
mod old_api;
mod program;
mod slot;
mod tasks;
mod worker;
mod world;

use std::fmt;
use std::sync::Once;
use std::time::Duration;

pub use program::{
    Action, HEADER, Helper, HookRule, Lock, MAX_STEPS, MAX_THREADS, Op, Program, SLOT, STEP, Setup,
    SlotDrop, SlotPlan, SlotWaiter, WakeMode, kind,
};
pub use world::{Finding, Oracle};

/// The longest a run may take to finish after its last step before it counts as hung: a hang
/// detector, generous (far longer under Miri, whose clock runs slowly).
pub const LIMIT: Duration = if cfg!(miri) {
    Duration::from_secs(600)
} else {
    Duration::from_secs(20)
};

/// How a run is judged.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Whether each guard is checked against `is_held_by_current_thread` after every step
    /// (off, the shadow owners and counters alone judge mutual exclusion).
    pub audit_guards: bool,
    /// How long a run may take to finish before it counts as hung (see [`LIMIT`]).
    pub limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            audit_guards: true,
            limit: LIMIT,
        }
    }
}

/// What a run that passed did.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Steps in the program.
    pub steps: usize,
    /// Critical sections entered (increments of the counters).
    pub increments: u64,
}

/// A run an oracle failed: what it found, and the program.
#[derive(Clone)]
pub struct Failure {
    /// What the oracles found, first first.
    pub findings: Vec<Finding>,
    /// The program run.
    pub program: Program,
    /// The input it was decoded from.
    pub bytes: Vec<u8>,
}

impl Failure {
    /// The oracle of the first finding.
    pub fn oracle(&self) -> Oracle {
        self.findings[0].oracle
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the adversary found {} problem(s):", self.findings.len())?;
        for finding in self.findings.iter().take(8) {
            writeln!(f, "  {finding}")?;
        }
        writeln!(f, "program:")?;
        write!(f, "{:?}", self.program)?;
        write!(f, "input: {}", literal(&self.bytes))
    }
}

/// `bytes` as a Rust byte-string literal.
pub fn literal(bytes: &[u8]) -> String {
    let body: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
    format!("b\"{body}\"")
}

/// Runs the program `bytes` decode to, with the default [`Options`].
///
/// # Errors
///
/// The [`Failure`] when an oracle found something.
pub fn run(bytes: &[u8]) -> Result<Report, Box<Failure>> {
    run_with(bytes, Options::default())
}

/// Runs the program `bytes` decode to.
///
/// # Errors
///
/// The [`Failure`] when an oracle found something.
pub fn run_with(bytes: &[u8], options: Options) -> Result<Report, Box<Failure>> {
    let program = Program::decode(bytes);
    let world = world::World::new_leaked(program.clone());
    let findings = conductor::conduct(world, options);
    if findings.is_empty() {
        Ok(Report {
            steps: program.steps.len(),
            increments: world.increments(),
        })
    } else {
        Err(Box::new(Failure {
            findings,
            program,
            bytes: bytes.to_vec(),
        }))
    }
}

/// Runs `bytes` and panics with the failure, if any: for the fuzz target.
///
/// # Panics
///
/// When an oracle found something.
pub fn check(bytes: &[u8]) {
    if let Err(failure) = run(bytes) {
        panic!("{failure}");
    }
}

/// Silences the panics of the fuzzer's own threads and its planned panics (the oracles judge
/// them and report what matters); other panics print as before. Idempotent.
pub fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("adversary"))
                || info.payload().is::<callbacks::Planned>();
            if !ours {
                previous(info);
            }
        }));
    });
}

/// A pseudo-random input of `steps` steps from `seed`, with `threads` workers if given: for
/// runs without proptest (Miri, long hunts).
pub fn generate(seed: u64, steps: usize, threads: Option<usize>) -> Vec<u8> {
    // xorshift64*: enough to spread bytes, and the same on every platform.
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    };
    let mut bytes: Vec<u8> = (0..HEADER + STEP * steps).map(|_| next()).collect();
    if let Some(threads) = threads {
        let threads = threads.clamp(2, MAX_THREADS);
        bytes[0] = (bytes[0] & !3) | u8::try_from(threads - 2).expect("a few threads");
    }
    bytes
}

/// Shrinks a failing input: drops steps, then zeroes and halves bytes, while `fails` still
/// says the smaller input fails. Returns the smallest found.
pub fn shrink(bytes: &[u8], mut fails: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    let mut best = bytes.to_vec();
    loop {
        let mut smaller = false;
        let mut step = (best.len().saturating_sub(HEADER)).div_ceil(STEP);
        while step > 0 {
            step -= 1;
            let start = HEADER + STEP * step;
            let mut candidate = best.clone();
            candidate.drain(start..(start + STEP).min(candidate.len()));
            if fails(&candidate) {
                best = candidate;
                smaller = true;
            }
        }
        for i in 0..best.len() {
            for value in [0, best[i] / 2] {
                if value == best[i] {
                    continue;
                }
                let mut candidate = best.clone();
                candidate[i] = value;
                if fails(&candidate) {
                    best = candidate;
                    smaller = true;
                    break;
                }
            }
        }
        if !smaller {
            return best;
        }
    }
}

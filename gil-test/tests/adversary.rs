//! The red team (`gil_test::adversary`) as a property: random safe-API programs on several
//! threads and two locks, judged by its oracles (mutual exclusion, guards that prove their
//! hold, no unexpected panic, no hang, no stray drop request). Also: the inputs that once
//! found a hole, replayed; a handful of cases small enough for Miri; and, ignored, a long
//! hunt that reports how many cases each finding took.
//!
//! `ADVERSARY_CASES` sets the property's case count (default 48, a few seconds; 2 under Miri,
//! which runs `miri_cases` instead).
#![cfg(not(loom))]

use gil_test::adversary::{self, HEADER, MAX_STEPS, Options, STEP};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Inputs the fuzzer found and shrank: each is a misuse that fails an oracle on a lock without
/// the check that makes it a panic or harmless. Each must pass; `regressions_replay` prints the
/// program of any that fails.
const REGRESSIONS: &[(&str, &[u8])] = &[
    (
        // A: Got → `ensure` B, kept; B: Released → acquire A, kept. Thread 1 acquires B and
        // drops it: B's release takes A, whose hook nests a guard of B inside B's release.
        "a hook of one lock, inside the other's release, keeps a nested guard of the lock \
         being released",
        b"\x00\x00\x00\x00\x61\xd4\x77\x0f\x00\x00\x00\x00\x79\x47\x51\x00\x05\x48\x00\x00",
    ),
    (
        // A: Released → `ensure` B and checkpoint; B: Got → `ensure` A, kept. Thread 1 holds
        // A, thread 0 waits in `ensure(A)`: thread 1's release nests a guard of A in B's hook,
        // and the hold thread 0 then gets must still end when its guard goes.
        "a guard nested in a release by a hook of the other lock, and the next holder",
        b"\x00\x00\x03\xae\x00\x06\x00\x00\xa1\xd4\x00\x00\x19\x47\x00\x00\x00\xce\x00\x00",
    ),
    (
        // A: Wants → request_drop(B); B: DropRequested → acquire A. Thread 0 holds A; thread
        // 1 polls a future of A, which queues: the hook chain takes A inside A's own hook.
        "a hook of one lock, inside the other's hook, acquires the lock whose future is \
         being polled",
        b"\x00\x00\xf9\x09\x00\x00\x00\x00\xeb\x52\x00\x00\x00\x47\x00\x00\x61\x6d\x00\x00",
    ),
    (
        // One slot step: a lock (10 ms interval) held while a helper's future queues for it,
        // the future leaked, the lock released and `mem::replace`d in its box by one with an
        // hour's interval, which a helper thread then waits for: nobody asks it to drop.
        "a lock put in place of one whose queued future was leaked",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x3d\x20\x00",
    ),
    (
        // Acquire(A), Ensure(A), Unlock(A): unlock refuses (a nested guard), and the hold must
        // end normally when the nested guard goes.
        "unlock() under a nested guard",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc7\x00\x00\x00\xd0\x00\x00\x00\xa2\x00\x00",
    ),
    (
        // Thread 0: Ensure(B), RequestDrop(B); thread 1: a future of B whose waker polls
        // inline and keeps the guard; thread 0: Checkpoint(B), which hands B to the future.
        "a checkpoint whose hand-over grants a future that its waker polls inline and keeps",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xd0\x3d\x00\x00\xdd\x2d\x00\x41\xae\x01\xaa\x00\xd5\x09\x00",
    ),
    (
        // As above, with yield_now.
        "a yield whose hand-over grants a future that its waker polls inline and keeps",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x21\x84\x00\x00\x00\x6f\x00\x02\x01\x1a\x00\x00",
    ),
    (
        // Ensure(A), Ensure(A), a pending call of A that panics, then `get_or_init` on the
        // nested guard: the initialiser's taking of A, on behalf of the hold set aside, must
        // not run the call.
        "an initialiser's taking with a panicking pending call queued",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x4e\x00\x00\x00\x4f\x00\x00\x00\xf6\x00\xa8\x00\xe7\x00\x03",
    ),
];

/// As [`REGRESSIONS`], through the old API's `EnsureGuard::guard_mut` (`--cfg gil_old_api`).
#[cfg(gil_old_api)]
const OLD_API_REGRESSIONS: &[(&str, &[u8])] = &[(
    // Ensure(A), then its own guard replaced by a guard of B (the guard of A dropped).
    "an acquiring ensure guard whose own guard is replaced by one of the other lock",
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x4e\x00\x00\x00\xbe\x15\x00",
)];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn input(header: [u8; HEADER], steps: &[[u8; STEP]]) -> Vec<u8> {
    let mut bytes = header.to_vec();
    bytes.extend(steps.concat());
    bytes
}

proptest! {
    #![proptest_config(Config {
        cases: u32::try_from(setting("ADVERSARY_CASES", if cfg!(miri) { 2 } else { 48 }))
            .unwrap_or(u32::MAX),
        // The regressions live in this file, as byte strings.
        failure_persistence: None,
        // A hang costs a watchdog limit per try.
        max_shrink_time: 120_000,
        ..Config::default()
    })]

    #[test]
    fn safe_programs_keep_the_contract(
        header in any::<[u8; HEADER]>(),
        steps in prop::collection::vec(any::<[u8; STEP]>(), 0..=MAX_STEPS / 2),
    ) {
        adversary::quiet_panics();
        let bytes = input(header, &steps);
        if let Err(failure) = adversary::run(&bytes) {
            prop_assert!(false, "{failure}");
        }
    }
}

#[test]
fn regressions_replay() {
    adversary::quiet_panics();
    #[cfg(gil_old_api)]
    let old = OLD_API_REGRESSIONS.iter();
    #[cfg(not(gil_old_api))]
    let old = [].iter();
    let failures: Vec<String> = REGRESSIONS
        .iter()
        .chain(old)
        .filter_map(|(what, bytes)| {
            adversary::run(bytes)
                .err()
                .map(|failure| format!("{what}: {failure}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A few small programs, fixed by seed: what `scripts/miri` runs (`ADVERSARY_MIRI_CASES`
/// cases, default 32, of 2 threads and 12 steps, from `ADVERSARY_SEED`).
#[test]
fn miri_cases() {
    adversary::quiet_panics();
    let cases = setting("ADVERSARY_MIRI_CASES", 32);
    let first = setting("ADVERSARY_SEED", 1);
    for seed in first..first + cases {
        let bytes = adversary::generate(seed, 12, Some(2));
        if let Err(failure) = adversary::run(&bytes) {
            panic!("seed {seed}: {failure}");
        }
    }
}

/// A long hunt: `ADVERSARY_CASES` programs (default 2,000) from `ADVERSARY_SEED`, of
/// `ADVERSARY_STEPS` steps; prints each failure with the case that found it, and shrinks the
/// first (`ADVERSARY_SHRINK=0` not to). `ADVERSARY_NO_AUDIT=1` leaves mutual exclusion to the
/// shadow owners and counters alone; `ADVERSARY_NO_SLOT=1` leaves out the steps that drop a
/// lock and put another in its place (a lock that leaves the clock a dangling pointer spoils
/// every run after it); `ADVERSARY_FAVOUR=K` makes every fourth step one of kind `K` (see
/// `adversary::kind`; 35 is the `GilMutex`'s); `ADVERSARY_LIMIT_SECS` sets the hang limit
/// (default 20).
#[test]
#[ignore = "a long hunt; run by hand"]
fn hunt() {
    adversary::quiet_panics();
    let cases = setting("ADVERSARY_CASES", 2_000);
    let seed = setting("ADVERSARY_SEED", 1);
    let steps = usize::try_from(setting("ADVERSARY_STEPS", 32)).unwrap_or(MAX_STEPS);
    let options = Options {
        audit_guards: setting("ADVERSARY_NO_AUDIT", 0) == 0,
        limit: std::time::Duration::from_secs(setting("ADVERSARY_LIMIT_SECS", 20)),
    };
    let no_slot = setting("ADVERSARY_NO_SLOT", 0) != 0;
    let favour = u8::try_from(setting("ADVERSARY_FAVOUR", 64)).unwrap_or(64);
    let mut first = None;
    for case in 0..cases {
        let mut bytes = adversary::generate(seed << 32 | case, steps, None);
        for (i, step) in bytes[HEADER..].chunks_mut(STEP).enumerate() {
            if no_slot && adversary::kind(step[1]) == adversary::SLOT {
                step[1] = 0;
            }
            let favoured = (0..=u8::MAX).find(|&b| adversary::kind(b) == favour);
            if let Some(byte) = favoured.filter(|_| i % 4 == 0) {
                step[1] = byte;
            }
        }
        if let Err(failure) = adversary::run_with(&bytes, options) {
            let steps: Vec<String> = failure
                .program
                .steps
                .iter()
                .map(|(t, op)| format!("{t}:{op:?}"))
                .collect();
            println!(
                "case {case}: {:?}: {} | hooks {:?} | {}",
                failure.oracle(),
                failure.findings[0].detail,
                failure.program.setup.hooks,
                steps.join(" ")
            );
            first.get_or_insert(failure);
        }
    }
    let Some(failure) = first else {
        println!("{cases} cases, no failure");
        return;
    };
    println!("first failure:\n{failure}");
    if setting("ADVERSARY_SHRINK", 1) != 0 {
        let quick = Options {
            limit: std::time::Duration::from_secs(3),
            ..options
        };
        let oracle = failure.oracle();
        let fails = |bytes: &[u8]| {
            (0..3).any(|_| adversary::run_with(bytes, quick).is_err_and(|f| f.oracle() == oracle))
        };
        let shrunk = adversary::shrink(&failure.bytes, fails);
        match adversary::run_with(&shrunk, quick) {
            Err(failure) => println!("shrunk:\n{failure}"),
            Ok(_) => println!(
                "shrunk (passed on its last run): {}",
                adversary::literal(&shrunk)
            ),
        }
    }
}

//! The torture run (gil_test::torture), short: a few seconds of it in the README's test
//! command. `scripts/torture` runs it longer, with more threads and seeds.
#![cfg(not(loom))]

use std::time::Duration;

use gil_test::torture;

/// `TORTURE_SEEDS`, `TORTURE_THREADS` and `TORTURE_SECS` lengthen it (see `scripts/torture`).
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn torture() {
    let seeds = setting("TORTURE_SEEDS", 3);
    let threads = setting("TORTURE_THREADS", 16) as usize;
    let length = Duration::from_millis(setting("TORTURE_SECS", 1) * 1000);
    let first = setting("TORTURE_SEED", 1);
    for seed in first..first + seeds {
        let report = torture::run(seed, threads, length);
        println!("torture: seed {seed}, {threads} threads: {report:?}");
        assert!(report.holds > 0 && report.ops > 0);
    }
}

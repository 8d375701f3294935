//! `gil-lab`: runs the workloads of docs/workloads.md (W1–W5 and the lab's own) for gil and
//! its peers — std `Mutex`, parking_lot, spin's ticket lock, and CPython's GIL through
//! `python3` — and prints them side by side as ratios; writes timelines of gil's convoy and
//! fairness runs (SVG and Chrome trace JSON).
//!
//! ```text
//! cargo run --release -p gil-test --bin gil-lab                 # quick: about a minute
//! cargo run --release -p gil-test --bin gil-lab -- --full       # W4 at 3 s per run
//! cargo run --release -p gil-test --bin gil-lab -- --workload W3,W4 --json
//! ```

fn main() {
    #[cfg(not(loom))]
    gil_test::lab::cli::main();
    #[cfg(loom)]
    eprintln!("gil-lab is not built under --cfg loom");
}

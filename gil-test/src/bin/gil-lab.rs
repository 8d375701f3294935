//! `gil-lab`: runs the workloads of DESIGN.md and prints gil against its peers.
//!
//! ```text
//! cargo run --release -p gil-test --bin gil-lab
//! ```
//!
//! Today it runs W1 (uncontended costs). W2–W5 (handoff, convoy, fairness, textbook demos) and
//! the timeline picture are not written yet.

use gil_test::w1::{self, Figure};

fn main() {
    let quick = !std::env::args().any(|a| a == "--full");
    let (ops, rounds) = if quick {
        (2_000_000, 15)
    } else {
        (10_000_000, 40)
    };
    println!("gil-lab — W1, uncontended ({ops} ops x {rounds} interleaved rounds, fastest round)");
    println!(
        "machine: {} logical CPUs; ratios are within this run only\n",
        cpus()
    );
    let w1 = w1::run(ops, rounds);
    table(
        "acquire + release",
        &w1.acquire_release,
        "parking_lot RawMutex",
    );
    table(
        "checkpoint, nothing pending",
        &w1.checkpoint,
        "parking_lot bump",
    );
    println!("W2 handoff, W3 convoy, W4 fairness and W5 demos: not measured yet.");
}

fn table(title: &str, figures: &[Figure], baseline: &str) {
    let base = figures
        .iter()
        .find(|f| f.name == baseline)
        .map_or(f64::NAN, |f| f.ns);
    println!("{title:<28} {:>9} {:>16}", "ns/op", format!("÷ {baseline}"));
    for f in figures {
        println!("  {:<26} {:>9.2} {:>16.2}", f.name, f.ns, f.ns / base);
    }
    println!();
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

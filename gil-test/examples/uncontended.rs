//! The uncontended paths of a `Gil`, alone, for counting their instructions with callgrind
//! (docs/benchmarks.md, "Instructions"): `acquire` takes and releases the lock `N` times;
//! `checkpoint` makes `N` checkpoints with nothing pending; `ensure` takes `N` nested guards
//! under one hold. The count per operation is the difference between two runs, `N` apart.
//!
//! ```sh
//! cargo build --release -p gil-test --example uncontended
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/uncontended acquire 1000000
//! ```

use std::hint::black_box;

use gil_std::Gil;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "acquire".to_owned());
    let n: u64 = args
        .next()
        .map_or(1_000_000, |n| n.parse().expect("N, a count of operations"));
    let gil = Gil::new();
    match what.as_str() {
        "acquire" => {
            for _ in 0..n {
                drop(black_box(gil.acquire()));
            }
        }
        "checkpoint" => {
            let mut guard = gil.acquire();
            for _ in 0..n {
                black_box(&mut guard).checkpoint().unwrap();
            }
        }
        "ensure" => {
            let _outer = gil.acquire();
            for _ in 0..n {
                drop(black_box(gil.ensure()));
            }
        }
        other => panic!("unknown path {other:?}: acquire, checkpoint or ensure"),
    }
}

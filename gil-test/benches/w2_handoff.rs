//! W2 (docs/workloads.md, "W2 handoff") under criterion: from a drop request to the requester
//! running with the lock, for gil (asked at once, and 200 µs after the requester queued),
//! against a raw futex wake between two threads (the floor). Each iteration's time is one
//! measured latency; the 200 µs of waiting before each request is not counted.

#[cfg(not(loom))]
mod w2 {
    use std::time::Duration;

    use criterion::{Criterion, criterion_group};
    use gil_test::lab::w2;

    fn total(samples: Vec<u64>) -> Duration {
        Duration::from_nanos(samples.iter().sum())
    }

    fn handoff(c: &mut Criterion) {
        let mut g = c.benchmark_group("w2_handoff");
        g.sample_size(20).measurement_time(Duration::from_secs(3));
        g.bench_function("gil, asked at once", |b| {
            b.iter_custom(|n| total(w2::gil_samples(n.max(2) as usize, false)))
        });
        g.bench_function("gil, asked 200 us after", |b| {
            b.iter_custom(|n| total(w2::gil_samples(n.max(2) as usize, true)))
        });
        g.bench_function("futex wake (floor)", |b| {
            b.iter_custom(|n| total(w2::futex_samples(n.max(1) as usize)))
        });
        g.finish();
    }

    criterion_group!(benches, handoff);

    pub fn run() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}

#[cfg(not(loom))]
fn main() {
    w2::run();
}

#[cfg(loom)]
fn main() {}

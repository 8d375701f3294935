//! W1 (docs/workloads.md, "W1 uncontended"): uncontended acquire + release, and a checkpoint
//! with nothing pending, for gil-core and the peers a user would pick instead. One
//! `cargo bench` run measures them side by side; compare within a run, not across runs.
//!
//! ```text
//! cargo bench -p gil-test --bench w1_uncontended
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gil_core::RawGil;
use lock_api::{RawMutex as _, RawMutexFair as _};

fn acquire_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("w1/acquire_release");

    let gil: RawGil = RawGil::new();
    group.bench_function("gil-core RawGil", |b| {
        b.iter(|| {
            let gil = black_box(&gil);
            gil.lock().unwrap();
            // SAFETY: locked just above on this thread.
            unsafe { gil.unlock() };
        })
    });

    // With no hook installed, gil-std's instrumentation is one relaxed load of the watch word
    // (the "zero-hook" path); the two cases after it show what a hook, and interrupt handles
    // (each taking then reads the thread's interrupt flag), add. One lock per case.
    let safe = gil_std::Gil::new();
    group.bench_function("gil-std Gil", |b| {
        b.iter(|| drop(black_box(&safe).acquire()))
    });

    let hooked = gil_std::Gil::new();
    hooked.set_event_hook(Some(&|_, event| {
        black_box(event);
    }));
    group.bench_function("gil-std Gil, a no-op event hook", |b| {
        b.iter(|| drop(black_box(&hooked).acquire()))
    });

    let interruptible = gil_std::Gil::new();
    let _handle = interruptible.interrupt_handle();
    group.bench_function("gil-std Gil, interrupt handles made", |b| {
        b.iter(|| drop(black_box(&interruptible).acquire()))
    });

    let pl = <parking_lot::RawMutex as lock_api::RawMutex>::INIT;
    group.bench_function("parking_lot RawMutex", |b| {
        b.iter(|| {
            let pl = black_box(&pl);
            let guard = pl.lock();
            // SAFETY: the guard state of the lock just taken.
            unsafe { pl.unlock(guard) };
        })
    });

    let std_mutex = std::sync::Mutex::new(());
    group.bench_function("std Mutex", |b| {
        b.iter(|| drop(black_box(&std_mutex).lock().unwrap()))
    });

    let ticket = spin::mutex::TicketMutex::<()>::new(());
    group.bench_function("spin TicketMutex", |b| {
        b.iter(|| drop(black_box(&ticket).lock()))
    });

    group.finish();
}

/// A check is about one cycle: with one per iteration, where the loop lands in the binary
/// decides the figure. Eight per iteration make the checks what is measured (figures are per 8).
/// No `black_box` on the lock, as in a real hot loop: an atomic load is never hoisted, so each
/// check stays a load and a branch.
macro_rules! eight {
    ($body:block) => {{
        $body $body $body $body $body $body $body $body
    }};
}

fn checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("w1/checkpoint");

    let gil: RawGil = RawGil::new();
    gil.lock().unwrap();
    group.bench_function("gil-core checkpoint x8", |b| {
        b.iter(|| {
            eight!({
                // SAFETY: this thread holds the lock for the whole benchmark.
                unsafe { gil.checkpoint() };
            })
        })
    });
    // SAFETY: locked above on this thread.
    unsafe { gil.unlock() };

    let safe = gil_std::Gil::new();
    let mut safe_guard = safe.acquire();
    group.bench_function("gil-std checkpoint x8", |b| {
        b.iter(|| {
            eight!({
                safe_guard.checkpoint().unwrap();
            })
        })
    });
    drop(safe_guard);

    let pl = <parking_lot::RawMutex as lock_api::RawMutex>::INIT;
    let mut guard = pl.lock();
    group.bench_function("parking_lot bump x8", |b| {
        b.iter(|| {
            eight!({
                // SAFETY: this thread holds the lock; `guard` is its state.
                unsafe { pl.bump(&mut guard) };
            })
        })
    });
    // SAFETY: the guard state of the lock taken above.
    unsafe { pl.unlock(guard) };

    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = acquire_release, checkpoint }
criterion_main!(benches);

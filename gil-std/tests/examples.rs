//! The examples, run as tests: `tiny_vm` and `rpc_dispatch`, two real clients of the runtime
//! services, and `async_rpc`, their async form.
#![cfg(not(loom))]

use std::time::Duration;

#[path = "../examples/async_rpc.rs"]
mod async_rpc;
#[path = "../examples/rpc_dispatch.rs"]
mod rpc_dispatch;
#[path = "../examples/tiny_vm.rs"]
mod tiny_vm;

use rpc_dispatch::{Config, Request, dispatch};

#[test]
fn tiny_vm_threads_share_one_interpreter_and_lose_no_update() {
    let (counter, switches) = tiny_vm::count_together(4, 10_000);
    assert_eq!(
        counter, 40_000,
        "every load-add-store ran without another thread in between"
    );
    eprintln!("{switches} switches");
}

#[test]
fn tiny_vm_stops_an_endless_loop_when_interrupted() {
    let (outcome, executed) = tiny_vm::interrupt_a_loop();
    assert_eq!(outcome, Err(tiny_vm::VmError::Interrupted));
    assert!(executed > 0);
}

fn config(pool: usize) -> Config {
    Config {
        pool,
        hold_lock_while_calling: false,
        // Long enough that a reply never misses it; the test with the lock held waits this long.
        give_up: Duration::from_secs(1),
    }
}

#[test]
fn rpc_a_pool_of_one_runs_servants_strictly_in_order() {
    let requests: Vec<Request> = (0..12)
        .map(|i| {
            if i % 2 == 0 {
                Request::Io(200)
            } else {
                Request::Compute(5_000)
            }
        })
        .collect();
    let report = dispatch(config(1), &requests);
    assert_eq!(report.log.len(), 24);
    assert!(report.is_serial(), "{:?}", report.log);
}

#[test]
fn rpc_an_outgoing_call_completes_because_its_wait_releases_the_lock() {
    for pool in [2, 4] {
        let requests: Vec<Request> = (0..12)
            .map(|i| match i % 3 {
                0 => Request::CallOut(i),
                1 => Request::Compute(5_000),
                _ => Request::Io(200),
            })
            .collect();
        let report = dispatch(config(pool), &requests);
        assert_eq!(report.replies.len(), 4);
        for (&index, &reply) in &report.replies {
            assert_eq!(
                reply,
                Some(2 * index as i64),
                "pool {pool}: request {index} answered"
            );
        }
        assert_eq!(
            report.delivered_elsewhere, 4,
            "each reply came on another pool thread"
        );
        assert_eq!(
            report.log.len(),
            24,
            "pool {pool}: every servant ran to its end"
        );
    }
}

#[test]
fn rpc_waiting_with_the_lock_held_would_deadlock() {
    let held = Config {
        hold_lock_while_calling: true,
        give_up: Duration::from_millis(200),
        ..config(2)
    };
    let report = dispatch(held, &[Request::CallOut(21)]);
    assert_eq!(
        report.replies[&0], None,
        "the callback could not take the lock"
    );
    let released = dispatch(config(2), &[Request::CallOut(21)]);
    assert_eq!(released.replies[&0], Some(42));
}

/// 64 async servants on two workers, each calling out without the lock and writing the answer
/// back under it: every one answered, through a callback into the runtime each. One servant
/// that keeps the lock across its call gets no answer (its callback cannot take the lock);
/// it gives up after 300 ms instead of hanging. One test: the two share the example's state.
#[test]
fn async_rpc_answers_every_call_and_holding_the_lock_would_deadlock() {
    let (answers, state) = async_rpc::serve(64, 2);
    assert!(answers.iter().all(Option::is_some), "{answers:?}");
    assert_eq!(state.requests, 64);
    assert_eq!(state.callbacks, 64);
    assert_eq!(state.answered, (1..=64).map(|n| 2 * n).sum::<u64>());
    assert_eq!(
        async_rpc::serve_holding_the_lock(Duration::from_millis(300)),
        None
    );
}

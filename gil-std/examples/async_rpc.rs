//! An async RPC server around one shared runtime state: requests arrive as tokio tasks, each
//! servant takes the lock with `Gil::acquire_async` (in the same line as any thread), reads the
//! state, and makes an outgoing async call to a remote service. The remote service answers
//! through a callback that needs the lock too, on a task of its own. The servant lets the lock
//! go across the call (`unlock_for_await`, `relock_async`); holding it instead, it would wait
//! for a callback that waits for it.
//!
//! ```sh
//! cargo run --release -p gil-std --example async_rpc -- 64
//! ```

#![allow(dead_code)] // the test uses parts of this file that `main` does not

use std::cell::RefCell;
use std::time::Duration;

use gil_std::{Gil, GilCell};
use tokio::sync::{mpsc, oneshot};

/// The runtime's state: what only the holder of `GIL` may touch.
#[derive(Debug, Default)]
pub struct State {
    /// Requests the servants took in.
    pub requests: u64,
    /// Callbacks the remote service made into the runtime.
    pub callbacks: u64,
    /// The sum of the replies the servants wrote back.
    pub answered: u64,
}

/// The lock of the runtime's state.
pub static GIL: Gil = Gil::new();
static STATE: GilCell<RefCell<State>> = GilCell::new(
    &GIL,
    RefCell::new(State {
        requests: 0,
        callbacks: 0,
        answered: 0,
    }),
);

/// A call to the remote service: a number, and where its answer goes.
type Call = (u64, oneshot::Sender<u64>);

/// The remote service: answers each call with twice its number, after a callback into the
/// runtime (which takes the lock) on a task of its own.
async fn remote(mut calls: mpsc::Receiver<Call>) {
    while let Some((n, reply)) = calls.recv().await {
        tokio::spawn(async move {
            let g = GIL.acquire_async().await.expect("the lock stays open");
            STATE.get(&g).borrow_mut().callbacks += 1;
            drop(g);
            let _ = reply.send(2 * n);
        });
    }
}

/// A servant: takes request `n` in under the lock, calls the remote service without it, and
/// writes the answer back under the lock. `None` if the answer does not come within `give_up`.
async fn servant(n: u64, calls: mpsc::Sender<Call>, give_up: Duration) -> Option<u64> {
    let away = {
        let guard = GIL.acquire_async().await.expect("the lock stays open");
        STATE.get(&guard).borrow_mut().requests += 1;
        guard.unlock_for_await()
    };
    let (reply, answer) = oneshot::channel();
    calls.send((n, reply)).await.ok()?;
    let answer = tokio::time::timeout(give_up, answer).await.ok()?.ok()?;
    let guard = away.relock_async().await;
    STATE.get(&guard).borrow_mut().answered += answer;
    Some(answer)
}

/// The same servant keeping the lock across its call: the callback waits for the lock, the
/// servant for the callback, and the answer never comes (`None` after `give_up`). Holding the
/// guard across an `.await` makes this future `!Send`, so it cannot be spawned on a
/// multi-threaded runtime: it runs on a `LocalSet`.
async fn servant_holding_the_lock(calls: mpsc::Sender<Call>, give_up: Duration) -> Option<u64> {
    let guard = GIL.acquire_async().await.expect("the lock stays open");
    STATE.get(&guard).borrow_mut().requests += 1;
    let (reply, answer) = oneshot::channel();
    calls.send((1, reply)).await.ok()?;
    let answer = tokio::time::timeout(give_up, answer).await.ok()?.ok()?;
    STATE.get(&guard).borrow_mut().answered += answer;
    Some(answer)
}

/// Serves requests `1..=n` at once on a runtime of `workers` threads; returns the answers and
/// what the runtime's state counted.
pub fn serve(n: u64, workers: usize) -> (Vec<Option<u64>>, State) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let before = snapshot();
    let answers = runtime.block_on(async {
        let (calls, incoming) = mpsc::channel(16);
        tokio::spawn(remote(incoming));
        let servants: Vec<_> = (1..=n)
            .map(|i| tokio::spawn(servant(i, calls.clone(), Duration::from_secs(10))))
            .collect();
        let mut answers = Vec::new();
        for s in servants {
            answers.push(s.await.expect("a servant"));
        }
        answers
    });
    (answers, since(before))
}

/// One servant that keeps the lock across its outgoing call, on a current-thread runtime (its
/// future is not `Send`): the callback waits for the lock, the servant for the callback.
/// Returns its answer (`None`: it gave up after `give_up`).
pub fn serve_holding_the_lock(give_up: Duration) -> Option<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let (calls, incoming) = mpsc::channel(16);
        // The remote service and its callbacks on a worker thread of their own.
        let remote_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("a tokio runtime");
        remote_runtime.spawn(remote(incoming));
        let answer = servant_holding_the_lock(calls, give_up).await;
        remote_runtime.shutdown_background();
        answer
    })
}

fn snapshot() -> (u64, u64, u64) {
    let g = GIL.acquire();
    let s = STATE.get(&g).borrow();
    (s.requests, s.callbacks, s.answered)
}

fn since(before: (u64, u64, u64)) -> State {
    let (requests, callbacks, answered) = snapshot();
    State {
        requests: requests - before.0,
        callbacks: callbacks - before.1,
        answered: answered - before.2,
    }
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .map_or(64, |a| a.parse().expect("a number of requests"));
    let (answers, state) = serve(n, 2);
    let answered = answers.iter().filter(|a| a.is_some()).count();
    println!(
        "{answered} of {n} requests answered; {} callbacks into the runtime; answers sum to {}",
        state.callbacks, state.answered
    );
}

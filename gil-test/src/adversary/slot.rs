//! A lock's whole life inside one step: a `Gil` in a `Box`, waited for by a future, dropped
//! once every borrow of it has ended, and a second `Gil` put in its place. Whatever the first
//! left behind (a future leaked in line, a listing on the clock) must not reach the second:
//! with an interval of an hour and nobody asking, its holder must never be asked to drop.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{Event, EventHook, Gil};

use super::local;
use super::program::{SlotDrop, SlotPlan, SlotWaiter};
use super::tasks::{block_on, poll_once};
use super::world::{Oracle, World};

/// How long a helper may take to queue before the slot gives up on it.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Runs `plan` on the calling thread (and helpers of its own), recording a stray drop
/// request on the second lock.
pub(crate) fn run(world: &'static World, plan: SlotPlan) {
    let mut slot = Some(Box::new(Gil::with_switch_interval(plan.first)));
    first_life(slot.as_deref().expect("filled above"), plan.waiter);
    // Every borrow of the first lock has ended: it may be moved and dropped.
    let second = Gil::with_switch_interval(plan.second);
    match plan.drop {
        SlotDrop::MovedOut => {
            let first: Gil = *slot.take().expect("filled above");
            drop(first);
            slot = Some(Box::new(second));
        }
        SlotDrop::InPlace => {
            drop(slot.take());
            slot = Some(Box::new(second));
        }
        SlotDrop::ReplacedInBox => {
            let boxed = slot.as_deref_mut().expect("filled above");
            drop(std::mem::replace(boxed, second));
        }
        SlotDrop::AssignedInBox => {
            **slot.as_mut().expect("filled above") = second;
        }
    }
    let second = slot.as_deref().expect("filled above");
    let requests = second_life(second, plan);
    let stats = second.stats();
    if plan.second == Gil::MAX_SWITCH_INTERVAL
        && (stats.clock_requests != 0 || stats.forced_drops != 0 || requests != 0)
    {
        world.record(
            Oracle::StrayDropRequest,
            format!(
                "a lock with an interval of an hour, put where a dropped one was ({plan:?}), \
                 nobody asking, saw {requests} drop requests reported, clock_requests {}, \
                 forced_drops {}",
                stats.clock_requests, stats.forced_drops
            ),
        );
    }
}

/// The first lock: held here while a helper thread's future queues for it, then released
/// with the future ended as `waiter` says.
fn first_life(first: &Gil, waiter: SlotWaiter) {
    let held = first.acquire();
    let future = thread::scope(|s| {
        let helper = thread::Builder::new()
            .name("adversary-slot".into())
            .spawn_scoped(s, || {
                local::set_me(local::SLOT_HELPER);
                let mut future = Box::pin(first.acquire_async());
                let _pending = poll_once(future.as_mut());
                match waiter {
                    SlotWaiter::Forget => {
                        std::mem::forget(future);
                        None
                    }
                    SlotWaiter::Cancel => None,
                    SlotWaiter::Complete => Some(future),
                }
            })
            .expect("a helper thread");
        helper.join().expect("the helper does not panic")
    });
    drop(held);
    if let Some(future) = future {
        let mut future = future;
        if let Ok(g) = block_on(future.as_mut()) {
            drop(g);
        }
    }
}

/// The second lock: held here for the plan's dwell, checkpointing, while a helper thread
/// waits for it. Returns the drop requests its hook saw.
fn second_life(second: &Gil, plan: SlotPlan) -> u64 {
    let seen: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let hook: &'static EventHook = Box::leak(Box::new(move |_: &Gil, event: Event| {
        if event == Event::DropRequested {
            seen.fetch_add(1, SeqCst);
        }
    }));
    second.set_event_hook(Some(hook));
    let mut held = second.acquire();
    thread::scope(|s| {
        if plan.second_waiter {
            thread::Builder::new()
                .name("adversary-slot".into())
                .spawn_scoped(s, || {
                    local::set_me(local::SLOT_HELPER);
                    drop(second.acquire());
                })
                .expect("a helper thread");
            let give_up = Instant::now() + QUEUE_WAIT;
            while !second.has_waiters() && Instant::now() < give_up {
                thread::yield_now();
            }
        }
        let until = Instant::now() + plan.dwell;
        while Instant::now() < until {
            let _ = held.checkpoint();
            thread::sleep(Duration::from_micros(200));
        }
        drop(held);
    });
    second.set_event_hook(None);
    seen.load(SeqCst)
}

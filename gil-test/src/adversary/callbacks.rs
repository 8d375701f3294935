//! User code the lock runs: event hooks, pending calls, breaker handlers, the closures of
//! blocking regions and initialisers, and what each does ([`Action`]). Every action runs under
//! `catch_unwind`, so that a panic it causes is judged where it happens: a documented misuse
//! (a guard of a lock whose hook is running, an acquire on a thread that holds the lock, a
//! closed lock) may panic; nothing else may. A planned panic then goes on from there, as
//! far as the site lets it.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any, resume_unwind};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use gil_core::Breaker;
use gil_std::{BreakerHandler, Event, EventHook, Gil, GilGuard};

use super::local::{self, Kept};
use super::program::{Action, Lock};
use super::tasks::Task;
use super::world::{Oracle, Res, World};

/// The payload of the fuzzer's own panics.
#[derive(Debug)]
pub(crate) struct Planned;

/// Where user code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    /// An event hook, for the event.
    Hook(Event),
    Call,
    Handler,
    Region,
    /// The initialiser of `Blocking::get_or_init`, which runs holding the lock.
    Init,
}

impl Site {
    /// Whether user code here may run while its thread holds the lock of the site (a hook
    /// may: `Released` comes before the release).
    fn may_hold(self) -> bool {
        match self {
            Site::Hook(event) => !matches!(event, Event::Wants | Event::BlockingLeft),
            Site::Call | Site::Handler | Site::Init => true,
            Site::Region => false,
        }
    }
}

/// Hooks nested deeper than this do nothing: a hook that takes the other lock runs that
/// lock's hook, which may take the first again.
const MAX_HOOK_DEPTH: usize = 3;

/// The message of a panic payload.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned())
}

/// Whether a panic is the fuzzer's own, or one of the lock's documented ones while `excused`.
pub(crate) fn panic_allowed(payload: &(dyn Any + Send), excused: bool) -> bool {
    payload.is::<Planned>() || (excused && message(payload).starts_with("gil:"))
}

/// Runs `action` as user code of `same` at `site` (with the guard the lock gave it, if
/// any), judging any panic it causes. A planned panic goes on out of the site, but not out of
/// a hook whose rule keeps it in.
pub(crate) fn run(
    world: &'static World,
    site: Site,
    same: Lock,
    guard: Option<&GilGuard<'_>>,
    action: Action,
    escapes: bool,
) {
    let hook = matches!(site, Site::Hook(_));
    if hook && local::hook_depth() > MAX_HOOK_DEPTH {
        return;
    }
    let target = target(world, same, action);
    // Whether the thread holds the lock is judged before the action runs (what it does may
    // change the answer); whether the lock is closed, after too (another thread may close it
    // meanwhile).
    let excused_before = target.is_some_and(|l| {
        let gil = world.gil(l);
        local::in_hook_of(l) || gil.is_held_by_current_thread() || gil.is_closed()
    });
    let outcome = catch_unwind(AssertUnwindSafe(|| act(world, site, same, guard, action)));
    if let Err(payload) = outcome {
        let excused = excused_before || target.is_some_and(|l| world.gil(l).is_closed());
        if !panic_allowed(&*payload, excused) {
            world.record(
                Oracle::UnexpectedPanic,
                format!(
                    "in a {site:?} of lock {same:?} doing {action:?} on {}: {}",
                    local::who(local::me()),
                    message(&*payload)
                ),
            );
        }
    }
    if action == Action::Panic && (!hook || escapes) {
        resume_unwind(Box::new(Planned));
    }
}

/// The lock an action takes, polls or checkpoints, if any.
fn target(world: &World, same: Lock, action: Action) -> Option<Lock> {
    match action {
        Action::TakeOther
        | Action::EnsureOther
        | Action::KeepOther
        | Action::CheckpointOther
        | Action::KeepOtherAcquired => Some(same.other()),
        Action::EnsureSame | Action::KeepSame | Action::AcquireSame => Some(same),
        Action::PollTask => newest_task(world).map(|t| t.lock),
        _ => None,
    }
}

fn newest_task(world: &World) -> Option<Arc<Task>> {
    let tasks = world.tasks.lock().unwrap_or_else(PoisonError::into_inner);
    tasks.iter().rev().find(|t| t.is_live()).cloned()
}

/// What the action does. The locks this thread held at its step's start, and the lock of the
/// site when it holds it, may be held while it waits.
fn act(
    world: &'static World,
    site: Site,
    same: Lock,
    guard: Option<&GilGuard<'_>>,
    action: Action,
) {
    let me = local::me();
    let other = same.other();
    let holding = local::held()
        | if site.may_hold() {
            Res::from(same).bit()
        } else {
            0
        };
    let waits = |lock: Lock| world.waits(me, holding, lock.into());
    // A guard kept is held for the rest of the step.
    let keep = |lock: Lock, guard: Kept| {
        world.holds(me, Res::from(lock).bit());
        local::keep(guard);
    };
    match action {
        Action::Nothing => {}
        // Caught in `run`, which sends it on if the site lets it.
        Action::Panic => planned_panic(),
        Action::Touch => {
            if let Some(g) = guard {
                world.touch(same, g, me);
            }
        }
        Action::TakeOther | Action::AcquireSame | Action::KeepOtherAcquired => {
            let lock = if action == Action::AcquireSame {
                same
            } else {
                other
            };
            waits(lock);
            let g = world.gil(lock).acquire();
            world.touch(lock, &g, me);
            if action == Action::KeepOtherAcquired {
                keep(lock, Kept::Guard(g));
            }
        }
        Action::EnsureOther | Action::KeepOther | Action::EnsureSame | Action::KeepSame => {
            let lock = match action {
                Action::EnsureOther | Action::KeepOther => other,
                _ => same,
            };
            waits(lock);
            let g = world.gil(lock).ensure();
            world.touch(lock, &g, me);
            if matches!(action, Action::KeepOther | Action::KeepSame) {
                keep(lock, Kept::Ensure(g));
            }
        }
        Action::RequestDropOther => world.gil(other).request_drop(),
        Action::RequestDropSame => world.gil(same).request_drop(),
        Action::CallOther => call(world, other, Action::Touch),
        Action::Sleep => std::thread::sleep(Duration::from_micros(50)),
        Action::PollTask => {
            if let Some(task) = newest_task(world) {
                task.poll_here_and_drop();
            }
        }
        Action::CheckpointOther => {
            waits(other);
            let mut g = world.gil(other).ensure();
            let _ = g.checkpoint();
        }
    }
}

/// The runtime bit each lock's handler is installed for.
pub(crate) const BIT: u32 = Breaker::runtime_bit(0);

/// Installs the event hooks and breaker handlers of the set-up. Every hook also counts the
/// drop requests it sees, for the drop-request oracle.
pub(crate) fn install(world: &'static World) {
    let setup = &world.program.setup;
    for lock in Lock::BOTH {
        let i = lock.index();
        let rules = setup.hooks[i].clone();
        if !rules.is_empty() {
            let hook = move |_: &Gil, event: Event| {
                if event == Event::DropRequested {
                    world.drop_events[i].fetch_add(1, SeqCst);
                }
                local::in_hook(lock, || {
                    for rule in rules.iter().filter(|r| r.event == event) {
                        run(
                            world,
                            Site::Hook(event),
                            lock,
                            None,
                            rule.action,
                            rule.escapes,
                        );
                    }
                });
            };
            let hook: &'static EventHook = Box::leak(Box::new(hook));
            world.gil(lock).set_event_hook(Some(hook));
        }
        if let Some(action) = setup.handlers[i] {
            let handler = move |g: &GilGuard<'_>, _bit: u32| {
                run(world, Site::Handler, lock, Some(g), action, true);
            };
            let handler: &'static BreakerHandler = Box::leak(Box::new(handler));
            world
                .gil(lock)
                .set_breaker_handler(BIT, Some(handler))
                .expect("bit 0 is a runtime bit");
        }
    }
}

/// A pending call doing `action` with the guard it is given.
pub(crate) fn call(world: &'static World, lock: Lock, action: Action) {
    let _ = world.gil(lock).add_pending_call(move |g| {
        run(world, Site::Call, lock, Some(g), action, true);
    });
}

/// Panics with the fuzzer's own payload.
pub(crate) fn planned_panic() -> ! {
    panic_any(Planned)
}

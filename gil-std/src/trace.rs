//! A timeline recorder: one consumer of the event hooks ([`Gil::set_event_hook`]) that keeps
//! every event with its time in a buffer per thread. What `gil-lab` draws its timelines from.
//!
//! Recording costs a clock read and an uncontended mutex per event; with no recorder (no
//! hook) the lock pays nothing.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::gil::Gil;
use crate::hooks::Event;

/// Records the events of one [`Gil`] from [`start`](Recorder::start) until
/// [`stop`](Recorder::stop) (or until dropped).
///
/// ```
/// use gil_std::{Event, Gil, Recorder};
///
/// let gil = Gil::new();
/// let recorder = Recorder::start(&gil);
/// let mut guard = gil.acquire();
/// guard.allow_threads(|| ());
/// drop(guard);
/// let trace = recorder.stop();
///
/// assert_eq!(trace.threads.len(), 1);
/// let events: Vec<Event> = trace.threads[0].events.iter().map(|&(_, e)| e).collect();
/// assert_eq!(events[0], Event::Got);
/// assert_eq!(events.last(), Some(&Event::Released));
/// ```
pub struct Recorder<'a> {
    gil: &'a Gil,
    shared: Arc<Shared>,
}

/// What [`Recorder::stop`] returns: each thread's events in the order that thread saw them.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// One entry per thread that had an event, in the order they first had one.
    pub threads: Vec<ThreadTrace>,
    /// How long the recording ran.
    pub span: Duration,
}

/// One thread's events, each with its time since the recording started.
#[derive(Clone, Debug)]
pub struct ThreadTrace {
    /// The thread's name, or `thread N` for an unnamed one.
    pub name: String,
    /// The events, in order, each with its time since [`Recorder::start`].
    pub events: Vec<(Duration, Event)>,
}

struct Shared {
    id: u64,
    start: Instant,
    on: AtomicBool,
    threads: Mutex<Vec<Arc<Mutex<ThreadTrace>>>>,
}

thread_local! {
    /// This thread's buffer, and the recording it belongs to.
    static BUFFER: RefCell<Option<(u64, Arc<Mutex<ThreadTrace>>)>> = const { RefCell::new(None) };
}

impl<'a> Recorder<'a> {
    /// Installs a hook on `gil` that records every event from now on. Replaces any hook
    /// already installed (and [`stop`](Recorder::stop) removes it).
    pub fn start(gil: &'a Gil) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let shared = Arc::new(Shared {
            id: IDS.fetch_add(1, Relaxed),
            start: Instant::now(),
            on: AtomicBool::new(true),
            threads: Mutex::new(Vec::new()),
        });
        let hook_shared = Arc::clone(&shared);
        // Hooks are 'static: this leaks the closure (and its share of `Shared`, emptied by
        // `stop`) once per recording.
        let hook = Box::leak(Box::new(move |_: &Gil, event| hook_shared.record(event)));
        gil.set_event_hook(Some(hook));
        Self { gil, shared }
    }

    /// Removes the hook and returns what was recorded.
    pub fn stop(self) -> Trace {
        self.finish()
    }

    fn finish(&self) -> Trace {
        self.gil.set_event_hook(None);
        // A thread may still be inside the old hook: `on` makes it record nothing more.
        self.shared.on.store(false, Relaxed);
        let span = self.shared.start.elapsed();
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        let threads = threads
            .iter()
            .map(|t| {
                let mut t = lock(t);
                ThreadTrace {
                    name: std::mem::take(&mut t.name),
                    events: std::mem::take(&mut t.events),
                }
            })
            .collect();
        Trace { threads, span }
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if self.shared.on.load(Relaxed) {
            self.finish();
        }
    }
}

impl fmt::Debug for Recorder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Shared {
    fn record(&self, event: Event) {
        if !self.on.load(Relaxed) {
            return;
        }
        let at = self.start.elapsed();
        // `try_with`: a thread being torn down has no buffer any more; its event is lost.
        let _ = BUFFER.try_with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            let mine = match &*buffer {
                Some((id, mine)) if *id == self.id => Arc::clone(mine),
                _ => {
                    let mine = self.register();
                    *buffer = Some((self.id, Arc::clone(&mine)));
                    mine
                }
            };
            lock(&mine).events.push((at, event));
        });
    }

    fn register(&self) -> Arc<Mutex<ThreadTrace>> {
        let mut threads = lock(&self.threads);
        let current = std::thread::current();
        let name = match current.name() {
            Some(name) => name.to_owned(),
            None => format!("thread {}", threads.len() + 1),
        };
        let mine = Arc::new(Mutex::new(ThreadTrace {
            name,
            events: Vec::with_capacity(1024),
        }));
        threads.push(Arc::clone(&mine));
        mine
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

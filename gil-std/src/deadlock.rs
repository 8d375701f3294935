//! Deadlock detection among a `Gil`'s registered threads (opt-in): what each one waits for in
//! a [`Blocking`](crate::Blocking) helper, and the report when all of them wait at once —
//! Ruby's "No live threads left. Deadlock?".
//!
//! A thread waiting for the `Gil` itself is not stuck: the holder runs, or lets the lock go
//! into a helper's region, and the line moves. So a cycle among one lock's threads is made of
//! helper waits only: every registered thread waits in a helper, for a mutex, a message, a
//! notification that only another of them could give. While detection is on, the helpers wait
//! in rounds of [`ROUND`] and look at the table between rounds; when every registered thread
//! has waited, with nothing in the table changing, for [`STILL`] rounds in a row, the first to
//! see it panics with the list. Its unwinding drops what it holds (a mutex guard), which may
//! let the others go on.

use std::fmt::Write as _;
use std::time::Duration;

use crate::sync::{AtomicBool, Mutex, lock, thread_token};
use std::sync::atomic::Ordering::Relaxed;

/// How long one round of a watched wait lasts.
pub(crate) const ROUND: Duration = Duration::from_millis(10);

/// How many rounds in a row a waiter must see every registered thread waiting, with no change
/// in the table, before it reports a deadlock: long enough for a thread that was just let go
/// to mark itself running again.
const STILL: u32 = 10;

/// What a thread waits for in a helper: the kind of wait and the address of what it waits on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// `Blocking::lock_mutex`.
    Mutex(usize),
    /// `Blocking::read_rwlock`.
    Read(usize),
    /// `Blocking::write_rwlock`.
    Write(usize),
    /// `Blocking::wait_condvar` or `wait_condvar_while`.
    Condvar(usize),
    /// `Blocking::recv_channel`.
    Channel(usize),
}

impl Wait {
    /// The address of what `thing` is, for the report.
    pub(crate) fn at<T: ?Sized>(thing: &T) -> usize {
        core::ptr::from_ref(thing).cast::<()>().addr()
    }
}

impl Wait {
    fn describe(self) -> String {
        match self {
            Wait::Mutex(at) => format!("waits for the Mutex at {at:#x} (Blocking::lock_mutex)"),
            Wait::Read(at) => {
                format!("waits to read the RwLock at {at:#x} (Blocking::read_rwlock)")
            }
            Wait::Write(at) => {
                format!("waits to write the RwLock at {at:#x} (Blocking::write_rwlock)")
            }
            Wait::Condvar(at) => {
                format!(
                    "waits on the Condvar at {at:#x} (Blocking::wait_condvar) for a notification"
                )
            }
            Wait::Channel(at) => format!(
                "waits for a message on the channel whose receiver is at {at:#x} (Blocking::recv_channel)"
            ),
        }
    }
}

/// The registered threads of one `Gil` and what each waits for.
pub(crate) struct Waits {
    on: AtomicBool,
    table: Mutex<Table>,
}

struct Table {
    threads: Vec<Entry>,
    /// Changed at every registration, every wait's start and end: a waiter that sees it
    /// unchanged between rounds knows nobody moved.
    epoch: u64,
    /// A deadlock was reported: the next one only after the table changes.
    reported: Option<u64>,
}

struct Entry {
    token: usize,
    name: String,
    waits: Option<Wait>,
}

/// Marks the calling thread running again when dropped.
struct Running<'a>(&'a Waits);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.mark(None);
    }
}

/// A waiter's view between rounds.
struct Watching {
    epoch: u64,
    still: u32,
}

impl Waits {
    crate::sync::const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                on: AtomicBool::new(false),
                table: Mutex::new(Table {
                    threads: Vec::new(),
                    epoch: 0,
                    reported: None,
                }),
            }
        }
    }

    pub(crate) fn set(&self, on: bool) {
        // Relaxed: a setting; the table itself is read under its mutex.
        self.on.store(on, Relaxed);
    }

    /// Adds the calling thread to the registered threads.
    pub(crate) fn register(&self) {
        let current = std::thread::current();
        let name = match current.name() {
            Some(name) => format!("'{name}'"),
            None => format!("{:?}", current.id()),
        };
        let mut table = lock(&self.table);
        table.threads.push(Entry {
            token: thread_token(),
            name,
            waits: None,
        });
        table.epoch += 1;
    }

    /// Removes the calling thread's latest registration.
    pub(crate) fn unregister(&self) {
        let token = thread_token();
        let mut table = lock(&self.table);
        if let Some(at) = table.threads.iter().rposition(|e| e.token == token) {
            table.threads.remove(at);
            table.epoch += 1;
        }
    }

    /// Waits for `wait` with `attempt`, called until it gives the result: `attempt(None)`
    /// blocks with no time limit, and is what a wait is when detection is off or the calling
    /// thread is not registered; otherwise the wait goes in rounds, `attempt(Some(ROUND))`
    /// blocking at most about that long, with a look at the table between them. `None` from an
    /// attempt: not done yet.
    ///
    /// # Panics
    ///
    /// If every registered thread has been waiting in a helper, with nothing changing, for
    /// [`STILL`] rounds: with the list of who waits for what.
    pub(crate) fn wait<R>(
        &self,
        wait: Wait,
        mut attempt: impl FnMut(Option<Duration>) -> Option<R>,
    ) -> R {
        // Relaxed: see `set`.
        let watched = crate::sync::POLLED_WAITS && self.on.load(Relaxed);
        let Some(mut watching) = watched.then(|| self.mark(Some(wait))).flatten() else {
            return unwatched(attempt);
        };
        // Marked running again however the wait ends: done, reported, or an attempt's panic.
        let _running = Running(self);
        loop {
            if let Some(done) = attempt(Some(ROUND)) {
                return done;
            }
            if let Some(report) = self.look(&mut watching) {
                crate::sync::refusal(format_args!("{report}"));
            }
        }
    }

    /// Marks what the calling thread waits for (`None`: it runs again). `None` if it is not
    /// registered.
    fn mark(&self, waits: Option<Wait>) -> Option<Watching> {
        let token = thread_token();
        let mut table = lock(&self.table);
        let entry = table.threads.iter_mut().rfind(|e| e.token == token)?;
        entry.waits = waits;
        table.epoch += 1;
        Some(Watching {
            epoch: table.epoch,
            still: 0,
        })
    }

    /// Between two rounds of a wait: the report, if every registered thread has waited, with
    /// nothing changing, for [`STILL`] rounds, and nobody reported this state yet.
    fn look(&self, watching: &mut Watching) -> Option<String> {
        let mut table = lock(&self.table);
        if table.epoch != watching.epoch || table.threads.iter().any(|e| e.waits.is_none()) {
            watching.epoch = table.epoch;
            watching.still = 0;
            return None;
        }
        watching.still += 1;
        if watching.still < STILL || table.reported == Some(table.epoch) {
            return None;
        }
        table.reported = Some(table.epoch);
        let me = thread_token();
        let mut report = String::from(
            "gil: deadlock: every thread registered with this Gil waits in a Blocking helper, \
             and only another of them could end each wait:",
        );
        for entry in &table.threads {
            let waits = entry.waits.map_or_else(String::new, Wait::describe);
            let this = if entry.token == me {
                " (this thread)"
            } else {
                ""
            };
            let _ = write!(report, "\n  thread {}{this} {waits}", entry.name);
        }
        Some(report)
    }
}

/// A wait that nobody watches: `attempt` with no limit until it is done.
pub(crate) fn unwatched<R>(mut attempt: impl FnMut(Option<Duration>) -> Option<R>) -> R {
    loop {
        if let Some(done) = attempt(None) {
            return done;
        }
    }
}

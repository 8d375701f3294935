//! W5, the textbook demos: what a GIL's users are told it does, shown.
//!
//! - **Cooperative release**: three threads that each take the lock, say "connecting", connect
//!   with the lock released, and say "connected". The contract predicts every "connecting"
//!   before any "connected": a thread in a blocking region lets the others run.
//! - **Preemptive switching**: two CPU-bound threads that never release on their own alternate
//!   at the switch interval, and more often at a lower one.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::Gil;

/// The cooperative-release demo's outcome.
#[derive(Clone, Debug)]
pub struct Cooperative {
    /// What the threads said, in order.
    pub said: Vec<String>,
    /// Whether every "connecting" came before every "connected".
    pub as_predicted: bool,
}

/// Runs the cooperative-release demo: three threads connect to a local server that answers
/// after `delay`.
pub fn cooperative(delay: Duration) -> Cooperative {
    static GIL: Gil = Gil::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let said = Mutex::new(Vec::new());
    thread::scope(|s| {
        s.spawn(|| {
            // The server: accepts three connections, answers each after `delay`.
            let mut conns = Vec::new();
            for _ in 0..3 {
                conns.push(listener.accept().expect("accept").0);
            }
            thread::sleep(delay);
            drop(conns);
        });
        for t in 0..3 {
            let said = &said;
            s.spawn(move || {
                let mut guard = GIL.acquire();
                said.lock().unwrap().push(format!("thread {t}: connecting"));
                guard.allow_threads(|| {
                    let mut c = TcpStream::connect(addr).expect("connect");
                    let _ = c.read(&mut [0u8; 1]); // waits for the server's answer (close)
                });
                said.lock().unwrap().push(format!("thread {t}: connected"));
            });
        }
    });
    let said = said.into_inner().unwrap();
    let last_connecting = said.iter().rposition(|l| l.ends_with("connecting"));
    let first_connected = said.iter().position(|l| l.ends_with("connected"));
    let as_predicted = matches!((last_connecting, first_connected), (Some(a), Some(b)) if a < b);
    Cooperative { said, as_predicted }
}

/// The preemptive-switching demo's outcome at one interval.
#[derive(Clone, Copy, Debug)]
pub struct Preemptive {
    /// The switch interval.
    pub interval: Duration,
    /// How long the two threads ran.
    pub time: Duration,
    /// Times the lock passed from one thread to the other.
    pub alternations: usize,
}

impl Preemptive {
    /// What the contract predicts: one alternation per interval (a thread waits an interval,
    /// then the holder's next checkpoint hands over), a little less for wake-up latency.
    pub fn predicted(&self) -> f64 {
        self.time.as_secs_f64() / self.interval.as_secs_f64()
    }
}

/// Runs two CPU-bound threads on a lock with `interval` for `time`, counting alternations.
pub fn preemptive(interval: Duration, time: Duration) -> Preemptive {
    let gil = Gil::with_switch_interval(interval);
    let last = AtomicUsize::new(usize::MAX);
    let alternations = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for me in 0..2 {
            let (gil, last, alternations, stop) = (&gil, &last, &alternations, &stop);
            s.spawn(move || {
                let mut guard = gil.acquire();
                let mut state = 7u64;
                while !stop.load(Relaxed) {
                    if last.swap(me, Relaxed) != me {
                        alternations.fetch_add(1, Relaxed);
                    }
                    for _ in 0..64 {
                        super::contenders::unit(&mut state);
                        guard.checkpoint().unwrap();
                    }
                }
            });
        }
        let began = Instant::now();
        while began.elapsed() < time {
            thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Relaxed);
    });
    Preemptive {
        interval,
        time,
        alternations: alternations.load(Relaxed).saturating_sub(1),
    }
}

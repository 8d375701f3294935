//! W3 on a busy machine: beside two busy loops that take no lock (the loaded runs), and with
//! more threads than CPUs and no outside load (the oversubscribed run: eight CPU threads and two
//! I/O threads). Each round runs the baselines and every lock once, under the same load, so
//! that a lock's ratios in a round share their machine; the tables show the median of the
//! rounds and their spread.

use std::time::Duration;

use serde_json::{Value, json};

use super::contenders::{Kind, with_contender};
use super::{INTERVAL, KS, cpython, w3};

/// Where W3 runs.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The name in tables.
    pub name: &'static str,
    /// The key in JSON.
    pub key: &'static str,
    /// Busy loops running beside the workload.
    pub busy: usize,
    /// The numbers of CPU threads.
    pub ks: &'static [usize],
    /// I/O threads.
    pub ios: usize,
}

/// Beside two busy loops, one I/O thread, K = 1, 2, 4.
pub const LOADED: Setting = Setting {
    name: "W3 loaded (beside two busy loops)",
    key: "w3_loaded",
    busy: 2,
    ks: &KS,
    ios: 1,
};

/// Eight CPU threads and two I/O threads, nothing beside them.
pub const OVERSUBSCRIBED: Setting = Setting {
    name: "W3 oversubscribed (8 CPU threads, 2 I/O threads, no outside load)",
    key: "w3_oversubscribed",
    busy: 0,
    ks: &[8],
    ios: 2,
};

/// One lock's ratios: per K, one per round.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The name in tables.
    pub name: String,
    /// The key in JSON.
    pub key: String,
    /// Round trips/s under the lock ÷ the same threads with no lock.
    pub io: Vec<Vec<f64>>,
    /// Units/s ÷ one CPU thread alone.
    pub cpu: Vec<Vec<f64>>,
}

impl Row {
    fn new(name: &str, key: &str, ks: usize) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
            io: vec![Vec::new(); ks],
            cpu: vec![Vec::new(); ks],
        }
    }

    /// The JSON of this row: medians, and every round.
    pub fn json(&self) -> Value {
        let med = |v: &[Vec<f64>]| v.iter().map(|r| Spread::of(r).median).collect::<Vec<_>>();
        json!({
            "lock": self.key, "io_ratio": med(&self.io), "cpu_ratio": med(&self.cpu),
            "io_ratio_rounds": self.io, "cpu_ratio_rounds": self.cpu,
        })
    }
}

/// The median of some rounds, and their least and greatest.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count); NaN when empty.
    pub median: f64,
    /// The least.
    pub min: f64,
    /// The greatest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v`.
    pub fn of(v: &[f64]) -> Self {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Self {
            median,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Runs `setting` for `rounds` rounds of `time` per run, CPython too if `python` (it has one I/O
/// thread, so only where `setting.ios` is 1). `step` hears what runs next. Returns the rows,
/// gil's first, and CPython's or why it was skipped.
pub fn sweep(
    setting: Setting,
    time: Duration,
    rounds: usize,
    python: bool,
    step: &mut dyn FnMut(String),
) -> (Vec<Row>, Option<Result<Row, String>>) {
    let ks = setting.ks;
    let mut rows: Vec<Row> = Kind::LOCKS
        .iter()
        .map(|k| Row::new(k.name(), k.key(), ks.len()))
        .collect();
    let python = python && setting.ios == 1;
    let mut py: Option<Result<Row, String>> = python.then(|| Ok(Row::new("", "cpython", ks.len())));
    let run = |kind, k, ios| with_contender(kind, INTERVAL, w3::Run { k, ios, time });
    for round in 1..=rounds {
        let _load = w3::BusyLoops::start(setting.busy);
        step(format!("{} round {round}/{rounds}: baselines", setting.key));
        let alone = run(Kind::NoLock, 1, 0).units;
        let base: Vec<f64> = ks
            .iter()
            .map(|&k| run(Kind::NoLock, k, setting.ios).round_trips)
            .collect();
        for (kind, row) in Kind::LOCKS.into_iter().zip(&mut rows) {
            for (i, &k) in ks.iter().enumerate() {
                step(format!(
                    "{} round {round}/{rounds}: K={k}, {}",
                    setting.key,
                    kind.name()
                ));
                let r = run(kind, k, setting.ios);
                row.io[i].push(r.round_trips / base[i]);
                row.cpu[i].push(r.units / alone);
            }
        }
        if let Some(Ok(row)) = &mut py {
            step(format!("{} round {round}/{rounds}: CPython", setting.key));
            if let Err(e) = cpython_round(time, ks, row) {
                py = Some(Err(e));
            }
        }
    }
    (rows, py)
}

/// One round of CPython's W3, its ratios appended to `row`.
fn cpython_round(time: Duration, ks: &[usize], row: &mut Row) -> Result<(), String> {
    let out = cpython::run(time, time, ks, &[])?;
    let (io, cpu) = cpython::w3_ratios(&out);
    if io.len() != ks.len() {
        return Err(format!("python3 ran {} of {} runs", io.len(), ks.len()));
    }
    row.name = cpython::name(&out);
    for (i, (io, cpu)) in io.into_iter().zip(cpu).enumerate() {
        row.io[i].push(io);
        row.cpu[i].push(cpu);
    }
    Ok(())
}

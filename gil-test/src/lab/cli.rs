//! The `gil-lab` command line: arguments, the run, the tables.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::contenders::{Kind, with_contender};
use super::{
    INTERVAL, KS, NS, Plan, abuse, busy, cpython, lua, timed, timeline, w2, w3, w4, w5, w6,
};
use crate::lab;
use crate::w1;
use gil_std::Gil;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

const HELP: &str = "\
gil-lab: gil against its peers on the workloads of docs/workloads.md

usage: gil-lab [--quick | --full] [--workload W1,W2,W3,W3-loaded,W3-oversubscribed,W4,W5,W6,abuse,lua,timed,timeline]
               [--json] [--out DIR]

  --quick       short runs, about two and a half minutes in all (the default)
  --full        longer runs: W4 at 3 s per run, more rounds and samples
  --workload    run only these (comma separated; default: all)
  --json        print the figures as JSON instead of tables
  --out DIR     where the timelines go (default: target/gil-lab)
";

struct Args {
    plan: Plan,
    full: bool,
    json: bool,
    only: Option<Vec<String>>,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        plan: Plan::QUICK,
        full: false,
        json: false,
        only: None,
        out: PathBuf::from("target/gil-lab"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => (args.plan, args.full) = (Plan::QUICK, false),
            "--full" => (args.plan, args.full) = (Plan::FULL, true),
            "--json" => args.json = true,
            "--workload" => {
                let list = it.next().ok_or("--workload needs a list, e.g. W3,W4")?;
                let names: Vec<String> = list.split(',').map(|w| w.trim().to_uppercase()).collect();
                for n in &names {
                    if ![
                        "W1",
                        "W2",
                        "W3",
                        "W3-LOADED",
                        "W3-OVERSUBSCRIBED",
                        "W4",
                        "W5",
                        "W6",
                        "ABUSE",
                        "LUA",
                        "TIMED",
                        "TIMELINE",
                    ]
                    .contains(&n.as_str())
                    {
                        return Err(format!(
                            "unknown workload {n:?}; pick from W1..W6, W3-loaded, W3-oversubscribed, abuse, lua, timed, timeline"
                        ));
                    }
                }
                args.only = Some(names);
            }
            "--out" => args.out = it.next().ok_or("--out needs a directory")?.into(),
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{HELP}")),
        }
    }
    Ok(args)
}

impl Args {
    fn wants(&self, w: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|x| x == w))
    }
}

/// Runs `gil-lab` with the process's arguments.
pub fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gil-lab: {e}");
            std::process::exit(2);
        }
    };
    let plan = args.plan;
    let steps = [
        ("W1", 1),
        ("W2", 4 * plan.w2_rounds.max(1)),
        (
            "W3",
            plan.w3_rounds * (2 + KS.len() * (1 + Kind::LOCKS.len())) + 1,
        ),
        (
            "W3-LOADED",
            plan.w3_busy_rounds * (busy::LOADED.ks.len() * Kind::LOCKS.len() + 2),
        ),
        (
            "W3-OVERSUBSCRIBED",
            plan.w3_busy_rounds * (busy::OVERSUBSCRIBED.ks.len() * Kind::LOCKS.len() + 1),
        ),
        ("W4", (Kind::LOCKS.len() + 1) * (1 + NS.len()) + 1),
        ("W5", 3),
        (
            "W6",
            w6::Way::ALL.len() + 2 * plan.w6_grants.0.len() * plan.w6_grants.1,
        ),
        ("ABUSE", Kind::LOCKS.len()),
        ("LUA", 1),
        ("TIMED", 1),
        ("TIMELINE", 2),
    ];
    let total: usize = steps.iter().filter(|s| args.wants(s.0)).map(|s| s.1).sum();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .expect("a valid template"),
    );
    let step = |msg: String| bar.set_message(msg);

    let mut text = String::new();
    let mut report = json!({
        "machine": { "cpus": cpus(), "os": std::env::consts::OS, "arch": std::env::consts::ARCH },
        "mode": if args.full { "full" } else { "quick" },
        "switch_interval_ms": INTERVAL.as_secs_f64() * 1e3,
    });
    let _ = writeln!(
        text,
        "gil-lab ({} run) — {} logical CPUs; every figure is a ratio within this run; switch interval {:?}\n",
        if args.full { "full" } else { "quick" },
        cpus(),
        INTERVAL
    );

    if args.wants("W1") {
        step("W1 uncontended".into());
        let r = w1::run(plan.w1.0, plan.w1.1);
        bar.inc(1);
        let _ = writeln!(
            text,
            "W1 uncontended — ns per operation, fastest of {} rounds of {} ops",
            plan.w1.1, plan.w1.0
        );
        w1_table(
            &mut text,
            "acquire + release",
            &r.acquire_release,
            "parking_lot RawMutex",
        );
        w1_table(
            &mut text,
            "checkpoint, nothing pending",
            &r.checkpoint,
            "parking_lot bump",
        );
        text.push('\n');
        let fig = |v: &[w1::Figure]| {
            v.iter()
                .map(|f| json!({"name": f.name, "ns": f.ns}))
                .collect::<Vec<_>>()
        };
        report["w1"] =
            json!({ "acquire_release": fig(&r.acquire_release), "checkpoint": fig(&r.checkpoint) });
    }

    if args.wants("W2") {
        let n = plan.w2_samples;
        let rounds = plan.w2_rounds.max(1);
        // Side by side: the machine's wake-up latency drifts over seconds, so each round runs
        // every row for its share of the samples, and each row's percentiles are over all its
        // rounds. (Run one after the other, gil's rows and the floor were seconds apart, and
        // the ratio moved between 0.91 and 1.11 from one run to the next.)
        let per = n.div_ceil(rounds);
        let mut samples: [Vec<u64>; 4] = Default::default();
        for round in 1..=rounds {
            step(format!(
                "W2 handoff, round {round}/{rounds}: gil, asked at once"
            ));
            samples[0].extend(w2::gil_samples(per, false));
            step(format!(
                "W2 handoff, round {round}/{rounds}: gil, asked after 200 µs"
            ));
            samples[1].extend(w2::gil_samples(per, true));
            step(format!(
                "W2 handoff, round {round}/{rounds}: parking_lot bump"
            ));
            samples[2].extend(w2::parking_lot_bump_samples(per));
            step(format!("W2 handoff, round {round}/{rounds}: futex floor"));
            samples[3].extend(w2::futex_samples(per));
            bar.inc(4);
        }
        let [spinning, asleep, pl, floor] = samples.map(w2::percentiles);
        let n = spinning.samples;
        let _ = writeln!(
            text,
            "W2 handoff — drop request to requester running, µs ({n} handoffs each, in {rounds} rounds side by side; the futex floor: a wake {:?} after the sleeper went to sleep)",
            w2::ASLEEP_AFTER
        );
        let _ = writeln!(
            text,
            "  {:<40} {:>9} {:>9} {:>14}",
            "", "p50", "p99", "p50 ÷ floor"
        );
        let rows = [
            ("gil, asked as soon as it queued", spinning),
            ("gil, asked 200 µs after it queued", asleep),
            ("parking_lot bump, 200 µs after", pl),
            ("futex wake (the floor)", floor),
        ];
        for (name, l) in rows {
            let _ = writeln!(
                text,
                "  {name:<40} {:>9.2} {:>9.2} {:>14.2}",
                l.p50,
                l.p99,
                l.p50 / floor.p50
            );
        }
        text.push('\n');
        let j = |l: w2::Latency| json!({"p50_us": l.p50, "p99_us": l.p99, "samples": l.samples});
        report["w2"] = json!({
            "gil_asked_at_once": j(spinning), "gil_asked_after_200us": j(asleep),
            "parking_lot_bump_after_200us": j(pl), "futex_floor": j(floor),
        });
    }

    // CPython runs in its own process, after the Rust contenders, so they do not overlap.
    let python_w3 = args.wants("W3");
    let python_w4 = args.wants("W4");

    if args.wants("W3") {
        let t = plan.w3_time;
        let rounds = plan.w3_rounds.max(1);
        // One W3 run is noisy on a small shared VM (cpu_ratio moved by ±0.08 between runs of
        // one binary): each round runs the baselines and then every contender once, and the
        // table shows the median of the rounds' ratios. The JSON keeps every round.
        let mut alone = Vec::new();
        let mut io_base = Vec::new();
        // Per contender, per K: the ratios of each round.
        let mut io = vec![vec![Vec::new(); KS.len()]; Kind::LOCKS.len()];
        let mut cpu = io.clone();
        // The floor at K = 1 (see `w3::Floor`), per round.
        let (mut floor_io, mut floor_cpu) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            step(format!("W3 round {round}/{rounds}: one CPU thread alone"));
            let cpu_alone = with_contender(
                Kind::NoLock,
                INTERVAL,
                w3::Run {
                    k: 1,
                    ios: 0,
                    time: t,
                },
            )
            .units;
            alone.push(cpu_alone);
            bar.inc(1);
            let mut base = Vec::new();
            for k in KS {
                step(format!("W3 round {round}/{rounds}: K={k}, no lock"));
                base.push(
                    with_contender(Kind::NoLock, INTERVAL, w3::Run { k, ios: 1, time: t })
                        .round_trips,
                );
                bar.inc(1);
            }
            step(format!("W3 round {round}/{rounds}: K=1, the floor"));
            let floor = w3::run(&w3::Floor::default(), 1, 1, t);
            floor_io.push(floor.round_trips / base[0]);
            floor_cpu.push(floor.units / cpu_alone);
            bar.inc(1);
            for (c, kind) in Kind::LOCKS.into_iter().enumerate() {
                for (i, k) in KS.into_iter().enumerate() {
                    step(format!("W3 round {round}/{rounds}: K={k}, {}", kind.name()));
                    let r = with_contender(kind, INTERVAL, w3::Run { k, ios: 1, time: t });
                    io[c][i].push(r.round_trips / base[i]);
                    cpu[c][i].push(r.units / cpu_alone);
                    bar.inc(1);
                }
            }
            io_base.push(base);
        }
        let _ = writeln!(
            text,
            "W3 convoy — io_ratio: round trips/s under the lock ÷ same threads with no lock; cpu_ratio: units/s ÷ one CPU thread alone ({t:?} per run; {})",
            if rounds == 1 {
                "one round".to_string()
            } else {
                format!("median of {rounds} rounds, each running every row once")
            }
        );
        let _ = writeln!(
            text,
            "  {:<32} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}",
            "", "io K=1", "K=2", "K=4", "cpu K=1", "K=2", "K=4"
        );
        // K = 1 only: NaN prints as "—".
        w3_row(
            &mut text,
            "the floor: a bare spin loan",
            &[median(&floor_io), f64::NAN, f64::NAN],
            &[median(&floor_cpu), f64::NAN, f64::NAN],
        );
        let mut rows = Vec::new();
        for (c, kind) in Kind::LOCKS.into_iter().enumerate() {
            let io_med: Vec<f64> = io[c].iter().map(|v| median(v)).collect();
            let cpu_med: Vec<f64> = cpu[c].iter().map(|v| median(v)).collect();
            w3_row(&mut text, kind.name(), &io_med, &cpu_med);
            rows.push(json!({
                "lock": kind.key(), "io_ratio": io_med, "cpu_ratio": cpu_med,
                "io_ratio_rounds": io[c], "cpu_ratio_rounds": cpu[c],
            }));
        }
        report["w3"] = json!({
            "seconds_per_run": t.as_secs_f64(), "ks": KS, "rounds": rounds, "runs": rows,
            "floor_k1": {"io_ratio_rounds": floor_io, "cpu_ratio_rounds": floor_cpu},
            "baseline": {"cpu_alone_units_per_s": alone, "no_lock_round_trips_per_s": io_base},
        });
        if python_w3 {
            step("W3: CPython".into());
            match cpython::run(t, t, &KS, &[]) {
                Ok(py) => {
                    let (io, cpu) = cpython::w3_ratios(&py);
                    if io.len() == KS.len() {
                        w3_row(&mut text, &cpython::name(&py), &io, &cpu);
                        let _ = writeln!(
                            text,
                            "  (CPython's io baseline: its I/O thread alone, echoing through a separate process; CPython has no run without its GIL)"
                        );
                    }
                    report["w3"]["cpython"] =
                        json!({"io_ratio": io, "cpu_ratio": cpu, "raw": py["w3"]});
                }
                Err(e) => {
                    let _ = writeln!(text, "  CPython: skipped — {e}");
                    report["w3"]["cpython"] = json!({"skipped": e});
                }
            }
            bar.inc(1);
        }
        text.push('\n');
    }

    for (name, setting) in [
        ("W3-LOADED", busy::LOADED),
        ("W3-OVERSUBSCRIBED", busy::OVERSUBSCRIBED),
    ] {
        if !args.wants(name) {
            continue;
        }
        let (t, rounds) = (plan.w3_time, plan.w3_busy_rounds);
        let mut hear = |msg: String| {
            step(msg);
            bar.inc(1);
        };
        let (rows, py) = busy::sweep(setting, t, rounds, true, &mut hear);
        busy_tables(&mut text, setting, t, rounds, &rows, py.as_ref());
        report[setting.key] = json!({
            "seconds_per_run": t.as_secs_f64(), "ks": setting.ks, "busy_loops": setting.busy,
            "io_threads": setting.ios, "rounds": rounds,
            "runs": rows.iter().map(busy::Row::json).collect::<Vec<_>>(),
            "cpython": match &py {
                Some(Ok(row)) => row.json(),
                Some(Err(e)) => json!({"skipped": e}),
                None => Value::Null,
            },
        });
    }

    if args.wants("W4") {
        let t = plan.w4_time;
        let _ = writeln!(
            text,
            "W4 fairness — N CPU-bound threads, {t:?} per run: Jain's index; worst stretch without progress ÷ ((N−1) × interval); throughput N=16 ÷ N=1"
        );
        let _ = writeln!(
            text,
            "  {:<32} {:>6} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6} {:>6}   {:>9}",
            "", "J N=2", "4", "8", "16", "gap 2", "4", "8", "16", "thr16÷1"
        );
        let mut rows = Vec::new();
        let mut net_rows = Vec::new();
        // Last, the same threads with no lock at all: at N = 2 each has a CPU of its own, so its
        // worst stretch is how long the machine itself stopped a running thread during the run
        // (a VM whose host deschedules it), which no lock can get under.
        for kind in Kind::LOCKS.into_iter().chain([Kind::NoLock]) {
            step(format!("W4: N=1, {}", kind.name()));
            let one = with_contender(kind, INTERVAL, w4::Run { n: 1, time: t });
            bar.inc(1);
            let mut runs = Vec::new();
            for n in NS {
                step(format!("W4: N={n}, {}", kind.name()));
                runs.push(with_contender(kind, INTERVAL, w4::Run { n, time: t }));
                bar.inc(1);
            }
            let name = if kind == Kind::NoLock {
                "no lock (machine's own stalls)"
            } else {
                kind.name()
            };
            w4_row(&mut text, name, &runs, one.throughput);
            let net: Vec<f64> = runs.iter().map(net_gap).collect();
            net_rows.push((name, net.clone()));
            rows.push(json!({
                "lock": kind.key(),
                "jain": runs.iter().map(w4::Fairness::jain).collect::<Vec<_>>(),
                "worst_over_bound": runs.iter().map(gap).collect::<Vec<_>>(),
                "worst_net_of_stalls_over_bound": net,
                "worst_ms": runs.iter().map(|f| f.worst().as_secs_f64() * 1e3).collect::<Vec<_>>(),
                "throughput": runs.iter().map(|f| f.throughput).collect::<Vec<_>>(),
                "throughput_n1": one.throughput,
            }));
        }
        let _ = writeln!(
            text,
            "  (no lock: the same threads unsynchronized; at N=2 each has a CPU, so its gap is the longest the machine stopped a running thread)"
        );

        report["w4"] = json!({"seconds_per_run": t.as_secs_f64(), "ns": NS, "runs": rows});
        if python_w4 {
            step("W4: CPython".into());
            match cpython::run(t, t, &[], &NS) {
                Ok(py) => {
                    let runs = py["w4"].as_array().cloned().unwrap_or_default();
                    let units = |r: &Value| -> Vec<u64> {
                        r["units"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_u64).collect())
                            .unwrap_or_default()
                    };
                    let fair: Vec<w4::Fairness> = runs
                        .iter()
                        .map(|r| w4::Fairness {
                            n: r["n"].as_u64().unwrap_or(0) as usize,
                            units: units(r),
                            worst_stretch: r["worst_stretch_s"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(Value::as_f64)
                                        .map(Duration::from_secs_f64)
                                        .collect()
                                })
                                .unwrap_or_default(),
                            worst_net: Vec::new(),
                            throughput: r["throughput"].as_f64().unwrap_or(f64::NAN),
                        })
                        .collect();
                    if fair.len() == 5 {
                        let name = format!("CPython {} GIL", py["version"].as_str().unwrap_or("?"));
                        w4_row(&mut text, &name, &fair[1..], fair[0].throughput);
                        report["w4"]["cpython"] = json!({
                            "jain": fair[1..].iter().map(w4::Fairness::jain).collect::<Vec<_>>(),
                            "worst_over_bound": fair[1..].iter().map(gap).collect::<Vec<_>>(),
                            "throughput_16_over_1": fair[4].throughput / fair[0].throughput,
                        });
                    }
                }
                Err(e) => {
                    let _ = writeln!(text, "  CPython: skipped — {e}");
                    report["w4"]["cpython"] = json!({"skipped": e});
                }
            }
            bar.inc(1);
        }
        // A diagnostic beside the target, not instead of it: how much of each worst stretch was
        // the machine stopping every thread at once.
        let _ = writeln!(
            text,
            "  gap net of stalls — the same worst stretch ÷ bound, less the spans of ≥ {} µs in which no thread progressed",
            w4::STALL.as_micros()
        );
        let _ = writeln!(
            text,
            "  (such a span is the machine's or a handoff that slow: gil's handoff is a futex wake, ~30 µs; a lock whose handoffs stall everyone is excused too, so read it beside the gap)"
        );
        for (name, net) in &net_rows {
            let _ = write!(text, "  {name:<32}                              ");
            for x in net {
                let _ = write!(text, " {x:>6.2}");
            }
            text.push('\n');
        }
        text.push('\n');
    }

    if args.wants("W5") {
        step("W5: cooperative release".into());
        let coop = w5::cooperative(Duration::from_millis(50));
        bar.inc(1);
        let _ = writeln!(text, "W5 textbook demos (gil)");
        let _ = writeln!(
            text,
            "  cooperative release: {} — predicted: every \"connecting\" before any \"connected\": {}",
            coop.said.join(", "),
            if coop.as_predicted { "yes" } else { "NO" }
        );
        let mut demos = Vec::new();
        for interval in [Duration::from_millis(5), Duration::from_millis(1)] {
            step(format!("W5: preemptive switching at {interval:?}"));
            let p = w5::preemptive(interval, plan.w5_time);
            bar.inc(1);
            let _ = writeln!(
                text,
                "  preemptive switching at {:?}: {} alternations in {:?} (one per interval would be {:.0})",
                p.interval,
                p.alternations,
                p.time,
                p.predicted()
            );
            demos.push(json!({"interval_ms": interval.as_secs_f64() * 1e3, "alternations": p.alternations, "predicted": p.predicted()}));
        }
        text.push('\n');
        report["w5"] = json!({"cooperative": {"said": coop.said, "as_predicted": coop.as_predicted}, "preemptive": demos});
    }

    if args.wants("W6") {
        let t = plan.w6_time;
        let _ = writeln!(
            text,
            "W6 async — {} tokio tasks and {} OS threads on one lock, {} worker threads, {:?} of work per hold, {t:?} per run; a timer task (every {:?}) that takes no lock",
            w6::TASKS,
            w6::THREADS,
            w6::WORKERS,
            w6::WORK,
            w6::TICK
        );
        let _ = writeln!(
            text,
            "  {:<38} {:>10} {:>10} {:>10} {:>12} {:>10}",
            "tasks take the lock by",
            "timer p50",
            "timer p99",
            "p99 ÷ alone",
            "units/s",
            "÷ blocking"
        );
        let mut runs = Vec::new();
        for way in w6::Way::ALL {
            step(format!("W6: {}", way.name()));
            runs.push(w6::run(way, t));
            bar.inc(1);
        }
        let alone = runs[0].timer_p99.as_secs_f64();
        let blocking = runs
            .iter()
            .find(|r| r.way == w6::Way::SpawnBlocking)
            .map_or(f64::NAN, |r| r.units_per_second);
        let mut rows = Vec::new();
        for r in &runs {
            let p99_ratio = r.timer_p99.as_secs_f64() / alone;
            let units_ratio = r.units_per_second / blocking;
            let units = if r.way == w6::Way::TimerAlone {
                format!("{:>12} {:>10}", "—", "—")
            } else {
                format!("{:>12.0} {:>10.3}", r.units_per_second, units_ratio)
            };
            let _ = writeln!(
                text,
                "  {:<38} {:>10} {:>10} {:>10.2} {units}",
                r.way.name(),
                format!("{} µs", r.timer_p50.as_micros()),
                format!("{} µs", r.timer_p99.as_micros()),
                p99_ratio
            );
            rows.push(json!({"way": r.way.key(), "timer_p50_us": r.timer_p50.as_secs_f64() * 1e6, "timer_p99_us": r.timer_p99.as_secs_f64() * 1e6, "timer_p99_ratio": p99_ratio, "ticks": r.ticks, "units_per_second": r.units_per_second, "task_units_per_second": r.task_units_per_second, "units_ratio_to_spawn_blocking": units_ratio}));
        }
        text.push('\n');
        let (counts, rounds) = plan.w6_grants;
        let _ = writeln!(
            text,
            "W6 grants — N tasks queued on a held lock, then released: each is granted the lock and lets it go at once, {} worker threads; time per grant, median of {rounds} rounds (range)",
            w6::WORKERS
        );
        let _ = writeln!(
            text,
            "  {:>9} {:>26} {:>26} {:>12}",
            "N", "gil acquire_async", "tokio Mutex::lock", "gil ÷ tokio"
        );
        let mut grant_rows = Vec::new();
        for &n in counts {
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..rounds {
                for (i, granter) in w6::Granter::ALL.into_iter().enumerate() {
                    step(format!("W6 grants: {} × {n}", granter.name()));
                    times[i].push(w6::grants(granter, n).as_secs_f64() * 1e9);
                }
            }
            let summary = |t: &mut Vec<f64>| {
                t.sort_by(f64::total_cmp);
                (t[t.len() / 2], t[0], t[t.len() - 1])
            };
            let (gil, tokio_mutex) = (summary(&mut times[0]), summary(&mut times[1]));
            let shown = |(median, low, high): (f64, f64, f64)| {
                format!("{median:.0} ns ({low:.0}–{high:.0})")
            };
            let _ = writeln!(
                text,
                "  {n:>9} {:>26} {:>26} {:>12.2}",
                shown(gil),
                shown(tokio_mutex),
                gil.0 / tokio_mutex.0
            );
            grant_rows.push(json!({"waiters": n, "gil_ns": gil.0, "gil_ns_range": [gil.1, gil.2], "tokio_mutex_ns": tokio_mutex.0, "tokio_mutex_ns_range": [tokio_mutex.1, tokio_mutex.2], "ratio": gil.0 / tokio_mutex.0}));
        }
        text.push('\n');
        report["w6"] = json!({"seconds_per_run": t.as_secs_f64(), "tasks": w6::TASKS, "threads": w6::THREADS, "workers": w6::WORKERS, "work_us": w6::WORK.as_secs_f64() * 1e6, "runs": rows, "grants": {"rounds": rounds, "rows": grant_rows}});
    }

    if args.wants("ABUSE") {
        let t = plan.w4_time;
        let k = 2;
        let _ = writeln!(
            text,
            "Abuse — a thread alternating {:?} blocking regions with {:?} CPU bursts, against K={k} CPU threads, {t:?} per run: its units ÷ the CPU threads' mean (1 = a fair share; the target, 0.9–1.1, is within 10 % of it)",
            abuse::REGION,
            abuse::BURST
        );
        let mut rows = Vec::new();
        for kind in Kind::LOCKS {
            step(format!("abuse: {}", kind.name()));
            let r = with_contender(kind, INTERVAL, abuse::Run { k, time: t });
            bar.inc(1);
            let _ = writeln!(text, "  {:<32} {:>8.3}", kind.name(), r.ratio());
            rows.push(json!({"lock": kind.key(), "share_ratio": r.ratio(), "abuser_units": r.abuser, "cpu_units": r.cpu}));
        }
        text.push('\n');
        report["abuse"] = json!({"seconds_per_run": t.as_secs_f64(), "k": k, "runs": rows});
    }

    if args.wants("LUA") {
        step("Lua: a real engine".into());
        let t = plan.lua_time;
        let f = lua::run(t);
        bar.inc(1);
        let _ = writeln!(
            text,
            "Lua (mlua, Lua 5.4) — a loop of {:.1} VM instructions per iteration, {t:?} per run; rates against one thread with no lock and no hook",
            f.instructions_per_iteration
        );
        let base = f.alone.rate;
        let runs = [
            ("1 thread, no lock, no hook", f.alone),
            (
                "1 thread, no lock, a hook every 1,000 instructions that only returns",
                f.empty_hook_1k,
            ),
            (
                "1 thread, Gil held, wants_checkpoint every 10,000 instructions",
                f.hook_10k,
            ),
            (
                "1 thread, Gil held, wants_checkpoint every 1,000 instructions",
                f.hook_1k,
            ),
            (
                "4 threads sharing one state under the Gil (every 1,000)",
                f.shared_4,
            ),
        ];
        let mut rows = Vec::new();
        for (name, r) in runs {
            let _ = writeln!(
                text,
                "  {name:<72} {:>7.1} M instructions/s  ratio {:>5.3}  Jain {:.4}",
                f.instructions(r) / 1e6,
                r.rate / base,
                r.jain
            );
            rows.push(json!({"run": name, "instructions_per_second": f.instructions(r), "ratio": r.rate / base, "jain": r.jain}));
        }
        text.push('\n');
        report["lua"] = json!({"seconds_per_run": t.as_secs_f64(), "instructions_per_iteration": f.instructions_per_iteration, "runs": rows});
    }

    if args.wants("TIMED") {
        step("timed acquire".into());
        let samples = if args.full { 2_000 } else { 300 };
        let figures = timed::run(samples);
        bar.inc(1);
        let _ = writeln!(
            text,
            "Timed acquire — how late try_acquire_for returns past its deadline on a held lock, {samples} waits each"
        );
        let _ = writeln!(
            text,
            "  {:>10} {:>10} {:>10}",
            "timeout", "p50 late", "p99 late"
        );
        let mut rows = Vec::new();
        for f in &figures {
            let _ = writeln!(
                text,
                "  {:>10} {:>10} {:>10}",
                format!("{:?}", f.timeout),
                format!("{:.1?}", f.p50),
                format!("{:.1?}", f.p99)
            );
            rows.push(json!({"timeout_us": f.timeout.as_secs_f64() * 1e6, "p50_late_us": f.p50.as_secs_f64() * 1e6, "p99_late_us": f.p99.as_secs_f64() * 1e6, "samples": f.samples}));
        }
        text.push('\n');
        report["timed"] = json!(rows);
    }

    if args.wants("TIMELINE") {
        let mut files = Vec::new();
        if let Err(e) = std::fs::create_dir_all(&args.out) {
            let _ = writeln!(
                text,
                "timelines: could not create {}: {e}",
                args.out.display()
            );
        } else {
            step("timeline: convoy".into());
            let gil = Gil::new();
            let trace = lab::record(&gil, Duration::from_millis(130), |gil| {
                w3::run(gil, 2, 1, Duration::from_millis(250));
            });
            bar.inc(1);
            let window = (Duration::from_millis(100), Duration::from_millis(130));
            files.extend(write_timeline(
                &args.out,
                "convoy",
                &trace,
                window,
                "W3 convoy on gil: the I/O thread and K=2 CPU threads, 30 ms",
            ));
            step("timeline: fairness".into());
            let gil = Gil::new();
            let trace = lab::record(&gil, Duration::from_millis(140), |gil| {
                w4::run(gil, 4, Duration::from_millis(250));
            });
            bar.inc(1);
            let window = (Duration::from_millis(100), Duration::from_millis(140));
            files.extend(write_timeline(
                &args.out,
                "fairness",
                &trace,
                window,
                "W4 fairness on gil: N=4 CPU threads, 5 ms interval, 40 ms",
            ));
            let _ = writeln!(text, "timelines written: {}", files.join(", "));
        }
        report["timelines"] = json!(files);
    }

    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
    } else {
        print!("{text}");
    }
}

fn write_timeline(
    dir: &std::path::Path,
    name: &str,
    trace: &gil_std::Trace,
    (from, to): (Duration, Duration),
    title: &str,
) -> Vec<String> {
    let rows = timeline::rows(trace, from, to);
    let mut written = Vec::new();
    for (ext, body) in [
        ("svg", timeline::svg(&rows, title)),
        ("json", timeline::chrome_json(&rows)),
    ] {
        let path = dir.join(format!("{name}.{ext}"));
        match std::fs::write(&path, body) {
            Ok(()) => written.push(path.display().to_string()),
            Err(e) => eprintln!("gil-lab: could not write {}: {e}", path.display()),
        }
    }
    written
}

/// W4's worst stretch as a multiple of its bound, (N − 1) × interval.
fn gap(f: &w4::Fairness) -> f64 {
    f.worst().as_secs_f64() / ((f.n - 1) as f64 * INTERVAL.as_secs_f64())
}

/// As `gap`, net of the machine's stalls (`w4::net_of_stalls`); NaN when not measured.
fn net_gap(f: &w4::Fairness) -> f64 {
    f.worst_net().map_or(f64::NAN, |w| {
        w.as_secs_f64() / ((f.n - 1) as f64 * INTERVAL.as_secs_f64())
    })
}

/// One W3 table row: io_ratio and cpu_ratio for K = 1, 2, 4; a NaN (not run) prints as "—".
fn w3_row(text: &mut String, name: &str, io: &[f64], cpu: &[f64]) {
    let _ = write!(text, "  {name:<32}");
    for &x in io {
        let _ = write!(
            text,
            " {:>8}",
            if x.is_nan() { "—".into() } else { ratio(x) }
        );
    }
    text.push_str("  ");
    for &x in cpu {
        let cell = if x.is_nan() {
            "—".into()
        } else {
            format!("{x:.3}")
        };
        let _ = write!(text, " {cell:>8}");
    }
    text.push('\n');
}

/// One W4 table row: Jain's index and the worst stretch ÷ bound for each N of `runs`, then
/// the last run's throughput ÷ `throughput_n1`.
fn w4_row(text: &mut String, name: &str, runs: &[w4::Fairness], throughput_n1: f64) {
    let _ = write!(text, "  {name:<32}");
    for f in runs {
        let _ = write!(text, " {:>6.3}", f.jain());
    }
    text.push_str("  ");
    for f in runs {
        let _ = write!(text, " {:>6.2}", gap(f));
    }
    let last = runs.last().map_or(f64::NAN, |f| f.throughput);
    let _ = writeln!(text, "   {:>9.3}", last / throughput_n1);
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
fn median(v: &[f64]) -> f64 {
    busy::Spread::of(v).median
}

/// The loaded or oversubscribed W3's two tables, io and cpu: per K, the median of the rounds
/// and their range.
fn busy_tables(
    text: &mut String,
    setting: busy::Setting,
    t: Duration,
    rounds: usize,
    rows: &[busy::Row],
    python: Option<&Result<busy::Row, String>>,
) {
    let _ = writeln!(
        text,
        "{} — ratios as W3's, the baselines under the same load; median [least–greatest] of {rounds} rounds, each running every row once ({t:?} per run)",
        setting.name
    );
    let py = match python {
        Some(Ok(row)) => Some(row),
        _ => None,
    };
    for (what, cpu) in [("io_ratio", false), ("cpu_ratio", true)] {
        let _ = write!(text, "  {what:<32}");
        for k in setting.ks {
            let _ = write!(text, " {:>24}", format!("K={k}"));
        }
        text.push('\n');
        for row in rows.iter().chain(py) {
            let _ = write!(text, "  {:<32}", row.name);
            for v in if cpu { &row.cpu } else { &row.io } {
                let s = busy::Spread::of(v);
                let cell = format!("{} [{}–{}]", ratio(s.median), ratio(s.min), ratio(s.max));
                let _ = write!(text, " {cell:>24}");
            }
            text.push('\n');
        }
    }
    if let Some(Err(e)) = python {
        let _ = writeln!(text, "  CPython: skipped — {e}");
    } else if python.is_none() {
        let _ = writeln!(
            text,
            "  (CPython: not run; its W3 script has one I/O thread)"
        );
    }
    text.push('\n');
}

/// A ratio that may be tiny: three significant digits.
fn ratio(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.1e}")
    }
}

fn w1_table(text: &mut String, title: &str, figures: &[w1::Figure], baseline: &str) {
    let base = figures
        .iter()
        .find(|f| f.name == baseline)
        .map_or(f64::NAN, |f| f.ns);
    let _ = writeln!(
        text,
        "  {title:<30} {:>9} {:>16}",
        "ns/op",
        format!("÷ {baseline}")
    );
    for f in figures {
        let _ = writeln!(
            text,
            "    {:<28} {:>9.2} {:>16.2}",
            f.name,
            f.ns,
            f.ns / base
        );
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

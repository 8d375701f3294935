//! Timelines from a [`gil_std::Trace`]: each thread's states over time, written as Chrome
//! trace JSON (opens in Perfetto or `chrome://tracing`) and as an SVG picture.

use std::fmt::Write as _;
use std::time::Duration;

use gil_std::{Event, Trace};

/// What a thread is doing over a stretch of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Holds the lock.
    Holding,
    /// Waits for the lock.
    Waiting,
    /// In a blocking region, without the lock.
    Blocking,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Holding => "holding",
            State::Waiting => "waiting",
            State::Blocking => "blocking",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            State::Holding => "#2e9e44",
            State::Waiting => "#f0a020",
            State::Blocking => "#3a6fd8",
        }
    }
}

/// One thread's stretches and the drop requests it made.
#[derive(Clone, Debug)]
pub struct Row {
    /// The thread's name.
    pub name: String,
    /// `(from, to, state)`, in order.
    pub spans: Vec<(Duration, Duration, State)>,
    /// When this thread made drop requests.
    pub requests: Vec<Duration>,
}

/// Turns each thread's events into stretches of holding, waiting and blocking, cut to the
/// window `from..to` of the trace and shifted to start at 0.
pub fn rows(trace: &Trace, from: Duration, to: Duration) -> Vec<Row> {
    let to = to.min(trace.span);
    let clip = |a: Duration, b: Duration| {
        let (a, b) = (a.clamp(from, to), b.clamp(from, to));
        (a < b).then(|| (a - from, b - from))
    };
    trace
        .threads
        .iter()
        .map(|t| {
            let mut spans = Vec::new();
            let mut requests = Vec::new();
            let mut current: Option<(Duration, State)> = None;
            let mut blocking = false;
            for &(at, event) in &t.events {
                let next = match event {
                    Event::Got => Some(Some(State::Holding)),
                    Event::Wants => Some(Some(State::Waiting)),
                    Event::Released if blocking => Some(Some(State::Blocking)),
                    Event::Released => Some(None),
                    Event::BlockingEntered => {
                        blocking = true;
                        None
                    }
                    Event::BlockingLeft => {
                        blocking = false;
                        Some(None)
                    }
                    Event::DropRequested => {
                        if (from..to).contains(&at) {
                            requests.push(at - from);
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(next) = next {
                    if let Some((since, state)) = current.take() {
                        spans.extend(clip(since, at).map(|(a, b)| (a, b, state)));
                    }
                    current = next.map(|s| (at, s));
                }
            }
            if let Some((since, state)) = current {
                spans.extend(clip(since, to).map(|(a, b)| (a, b, state)));
            }
            Row {
                name: t.name.clone(),
                spans,
                requests,
            }
        })
        .filter(|r| !r.spans.is_empty() || !r.requests.is_empty())
        .collect()
}

/// The rows as Chrome trace JSON ("X" events per stretch, "i" events per drop request).
pub fn chrome_json(rows: &[Row]) -> String {
    let mut events = Vec::new();
    for (tid, row) in rows.iter().enumerate() {
        events.push(serde_json::json!({
            "ph": "M", "name": "thread_name", "pid": 1, "tid": tid,
            "args": { "name": row.name },
        }));
        for &(from, to, state) in &row.spans {
            events.push(serde_json::json!({
                "ph": "X", "name": state.name(), "pid": 1, "tid": tid,
                "ts": micros(from), "dur": micros(to - from),
            }));
        }
        for &at in &row.requests {
            events.push(serde_json::json!({
                "ph": "i", "name": "drop requested", "pid": 1, "tid": tid, "s": "t",
                "ts": micros(at),
            }));
        }
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" }).to_string()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The rows as an SVG picture: a row per thread, time across, a colour per state, red ticks
/// for drop requests; `title` on top.
pub fn svg(rows: &[Row], title: &str) -> String {
    const WIDTH: f64 = 1200.0;
    const LEFT: f64 = 170.0;
    const ROW: f64 = 26.0;
    const TOP: f64 = 50.0;
    let end = rows
        .iter()
        .flat_map(|r| r.spans.iter().map(|s| s.1))
        .max()
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-9);
    let scale = (WIDTH - LEFT - 20.0) / end;
    let x = |d: Duration| LEFT + d.as_secs_f64() * scale;
    let height = TOP + ROW * rows.len() as f64 + 60.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="15">{}</text>"#,
        escape(title)
    );
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + ROW * 0.6,
            escape(&row.name)
        );
        for &(from, to, state) in &row.spans {
            let (x0, x1) = (x(from), x(to));
            let _ = writeln!(
                out,
                r#"<rect x="{x0:.2}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{}"/>"#,
                y + 3.0,
                (x1 - x0).max(0.4),
                ROW - 6.0,
                state.colour()
            );
        }
        for &at in &row.requests {
            let _ = writeln!(
                out,
                r#"<line x1="{0:.2}" x2="{0:.2}" y1="{1:.1}" y2="{2:.1}" stroke="red" stroke-width="1.5"/>"#,
                x(at),
                y,
                y + ROW
            );
        }
    }
    // The time axis, in milliseconds.
    let axis = TOP + ROW * rows.len() as f64 + 8.0;
    let step = nice_step(end * 1e3 / 8.0);
    let decimals = if step >= 1.0 { 0 } else { 2 };
    for i in 0.. {
        let ms = f64::from(i) * step;
        if ms > end * 1e3 {
            break;
        }
        let px = LEFT + ms / 1e3 * scale;
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{axis}" stroke="#ccc"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{ms:.decimals$} ms</text>"##,
            axis + 14.0
        );
    }
    let legend = axis + 36.0;
    let mut lx = LEFT;
    for state in [State::Holding, State::Waiting, State::Blocking] {
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{:.1}" width="14" height="12" fill="{}"/><text x="{}" y="{legend:.1}">{}</text>"#,
            legend - 10.0,
            state.colour(),
            lx + 18.0,
            state.name()
        );
        lx += 110.0;
    }
    let _ = writeln!(
        out,
        r#"<line x1="{lx}" x2="{lx}" y1="{:.1}" y2="{:.1}" stroke="red" stroke-width="1.5"/><text x="{}" y="{legend:.1}">drop request</text>"#,
        legend - 11.0,
        legend + 2.0,
        lx + 6.0
    );
    out.push_str("</svg>\n");
    out
}

fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.max(1e-6).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

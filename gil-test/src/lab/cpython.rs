//! CPython's GIL on W3 and W4: the same workloads written in Python (`cpython.py`), run with
//! `python3` when it is present.

use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = include_str!("cpython.py");

/// What CPython measured, as the script's JSON; `Err` says why there is nothing.
pub fn run(
    w3_time: Duration,
    w4_time: Duration,
    ks: &[usize],
    ns: &[usize],
) -> Result<serde_json::Value, String> {
    let list = |xs: &[usize]| {
        xs.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(w3_time.as_secs_f64().to_string())
        .arg(w4_time.as_secs_f64().to_string())
        .arg(list(ks))
        .arg(list(ns))
        .output()
        .map_err(|e| format!("python3 not run ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("python3 printed no JSON ({e})"))
}

/// W3's ratios in what [`run`] returned, one per K: round trips ÷ the I/O thread alone, and
/// units ÷ one CPU thread alone (NaN where a figure is missing).
pub fn w3_ratios(out: &serde_json::Value) -> (Vec<f64>, Vec<f64>) {
    let w3 = &out["w3"];
    let (io_alone, cpu_alone) = (figure(&w3["io_alone"]), figure(&w3["cpu_alone"]));
    let runs = w3["runs"].as_array().map_or(&[][..], Vec::as_slice);
    runs.iter()
        .map(|r| {
            (
                figure(&r["trips"]) / io_alone,
                figure(&r["units"]) / cpu_alone,
            )
        })
        .unzip()
}

/// The row name of what [`run`] returned: the interpreter and its version.
pub fn name(out: &serde_json::Value) -> String {
    format!("CPython {} GIL", out["version"].as_str().unwrap_or("?"))
}

fn figure(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

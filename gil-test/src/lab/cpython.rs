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

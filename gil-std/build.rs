//! Named fault points: `GIL_BITE=<name>` builds the crate with `cfg(bite = "<name>")`, which
//! turns on the bug of that name where the source has `cfg!(bite = "<name>")`. Only
//! `scripts/bite.py` sets it, to show that the check meant to catch the bug fails
//! (docs/verification.md, "The models bite"). Unset, nothing changes.

fn main() {
    println!("cargo::rerun-if-env-changed=GIL_BITE");
    println!("cargo::rustc-check-cfg=cfg(bite, values(any()))");
    if let Some(name) = std::env::var("GIL_BITE").ok().filter(|n| !n.is_empty()) {
        println!("cargo::rustc-cfg=bite=\"{name}\"");
    }
}

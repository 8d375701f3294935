//! Replays the fuzzers' committed corpora (`fuzz/corpus/`) on stable, so `cargo test` covers
//! every input the fuzzers kept: the core against its model, and gil-std under real threads.
#![cfg(not(loom))]

use std::fs;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs
}

#[test]
fn core_ops_corpus_replays() {
    let mut ran = 0;
    for (path, bytes) in corpus("core_ops") {
        eprintln!("{}", path.display());
        ran += gil_test::model::run(&gil_test::model::decode(&bytes));
    }
    assert!(ran > 0, "the corpus ran no operation");
}

#[test]
fn std_threads_corpus_replays() {
    for (path, bytes) in corpus("std_threads") {
        eprintln!("{}", path.display());
        gil_test::scenario::run(&bytes);
    }
}

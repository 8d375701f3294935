//! The red team (`gil_test::adversary`): input bytes become a safe-API program on several
//! threads and two locks, judged by its oracles (mutual exclusion, guards that prove their
//! hold, no unexpected panic, no hang, no stray drop request). A failure panics with the
//! program and the oracle's findings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: gil_test::adversary::quiet_panics(),
    |data: &[u8]| gil_test::adversary::check(data)
);

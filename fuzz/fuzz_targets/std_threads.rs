//! gil-std under real threads doing what the input bytes say (`gil_test::scenario`): checks
//! one holder at a time, no lost update, and that every run finishes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gil_test::scenario::run(data);
});

//! gil-core against its reference model, coverage-guided: the input bytes are the operations
//! of four logical threads (`gil_test::model::decode`), run and checked step by step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gil_test::model::run(&gil_test::model::decode(data));
});

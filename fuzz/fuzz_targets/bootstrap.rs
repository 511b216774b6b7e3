//! libFuzzer target `bootstrap`: see `hotlease_fuzz::bootstrap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hotlease_fuzz::bootstrap(data));

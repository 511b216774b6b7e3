//! libFuzzer target `vrrp`: see `hotlease_fuzz::vrrp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hotlease_fuzz::vrrp(data));

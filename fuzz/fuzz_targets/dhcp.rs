//! libFuzzer target `dhcp`: see `hotlease_fuzz::dhcp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hotlease_fuzz::dhcp(data));

//! libFuzzer target `netconf_framing`: see `hotlease_fuzz::netconf_framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hotlease_fuzz::netconf_framing(data));

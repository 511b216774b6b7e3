//! libFuzzer target `netconf_rpc`: see `hotlease_fuzz::netconf_rpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hotlease_fuzz::netconf_rpc(data));

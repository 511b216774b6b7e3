//! libFuzzer target `backup_wire`: see `hotlease_fuzz::backup_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hotlease_fuzz::backup_wire(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oxifaster::fuzzing::log_page(data));

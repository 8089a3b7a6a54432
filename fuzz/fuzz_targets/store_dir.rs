#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oxifaster::fuzzing::store_dir(data));

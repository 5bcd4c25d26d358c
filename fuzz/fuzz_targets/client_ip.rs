#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_core_traits::fuzzing::client_ip(data));

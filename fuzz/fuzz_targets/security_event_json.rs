#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_core_traits::fuzzing::security_event_json(data));

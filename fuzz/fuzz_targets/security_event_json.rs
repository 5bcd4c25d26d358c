#![no_main]
libfuzzer_sys::fuzz_target!(
    |data: &[u8]| drop(palisade_core_traits::SecurityEvent::from_json(data))
);

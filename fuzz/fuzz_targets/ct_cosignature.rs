#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_ct_monitor::fuzz::cosignature(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| drop(palisade_hsm_keys::TokenSelector::parse(
    &String::from_utf8_lossy(data)
)));

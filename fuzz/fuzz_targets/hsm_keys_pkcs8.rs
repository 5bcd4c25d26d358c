#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = palisade_hsm_keys::fuzz_pkcs8_parts(data);
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = palisade_hsm_keys::fuzzing::hsm_keys_akp_jwk(data);
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = palisade_jwt_cache::fuzzing::jwt_cache_akp_jwk(data);
});

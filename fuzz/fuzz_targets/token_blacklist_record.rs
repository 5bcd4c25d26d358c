#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = palisade_token_blacklist::fuzzing::token_blacklist_record(data);
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    palisade_threat_score::fuzzing::threat_score_events(data);
});

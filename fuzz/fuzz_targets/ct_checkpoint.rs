#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = palisade_ct_monitor::fuzzing::ct_checkpoint(data);
});

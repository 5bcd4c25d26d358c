#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = palisade_playbooks::audit::parse_record(data);
});

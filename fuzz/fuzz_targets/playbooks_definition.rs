#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_playbooks::fuzzing::playbooks_definition(data));

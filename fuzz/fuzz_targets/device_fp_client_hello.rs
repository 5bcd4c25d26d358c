#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    palisade_device_fp::fuzzing::client_hello(data);
});

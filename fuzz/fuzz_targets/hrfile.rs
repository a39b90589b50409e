//! libFuzzer target: `govledger::fuzzing::hrfile` (its input layout is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    govledger::fuzzing::hrfile(data);
});

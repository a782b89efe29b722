//! `Manifest::parse` and its round trip: see `haypack_fuzz::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| haypack_fuzz::manifest(data));

//! The whole reader (open, list, get, record, get_many, verify) on a hostile archive in memory: see `haypack_fuzz::archive`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| haypack_fuzz::archive(data));

//! `RecordFrame::parse` and `decode_record` on record bytes: see `haypack_fuzz::record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| haypack_fuzz::record(data));

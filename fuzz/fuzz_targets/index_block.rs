//! `decode_block`, `find_in_block` and `Container::unmeta` on arbitrary bytes: see `haypack_fuzz::index_block`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| haypack_fuzz::index_block(data));

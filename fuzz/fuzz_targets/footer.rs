//! `Footer::decode` on pack tails: see `haypack_fuzz::footer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| haypack_fuzz::footer(data));

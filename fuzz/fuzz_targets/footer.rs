//! `Footer::decode` on arbitrary pack tails.
//!
//! Input: the length of the pack before the tail (4 bytes, little-endian), then the tail. The
//! pack is `before + tail.len()` bytes long: the tail is always the pack's end, as callers
//! promise, but need not be all of it, and the index the footer points at may lie far before it.
#![no_main]

use haypack_format::Footer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (before, tail) = match data {
        [a, b, c, d, tail @ ..] => (u64::from(u32::from_le_bytes([*a, *b, *c, *d])), tail),
        _ => (0, data),
    };
    let pack_len = before + tail.len() as u64;
    if let Ok(footer) = Footer::decode(tail, pack_len) {
        // The index ends where the footer starts, and the footer re-encodes to bytes that
        // decode to it again.
        let footer_start = pack_len - footer.framed_len();
        assert_eq!(footer.index_offset.checked_add(footer.index_len), Some(footer_start));
        assert_eq!(Footer::decode(&footer.encode(), pack_len).ok(), Some(footer));
    }
});

//! `decode_block`, `find_in_block` and `Container::unmeta` on arbitrary bytes, and the first and
//! last chained as a reader does with a pack's trailing index.
#![no_main]

use haypack_format::{Container, Meta, decode_block, find_in_block};
use libfuzzer_sys::fuzz_target;

/// The memory bound a reader gives untrusted blocks.
const MAX_RAW: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = decode_block(data, MAX_RAW) {
        assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        // A valid block: searching it finds exactly what decoding it gives.
        for e in entries.iter().take(8) {
            assert_eq!(find_in_block(data, MAX_RAW, &e.key).ok().flatten().as_ref(), Some(e));
        }
    }
    let _ = find_in_block(data, MAX_RAW, "a");
    for container in [Container::Zstd, Container::Gzip] {
        let _ = container.unmeta(Meta::Footer, data);
        if let Ok(payload) = container.unmeta(Meta::Index, data) {
            assert!(payload.len() <= data.len());
            let _ = decode_block(&payload, MAX_RAW);
        }
    }
});

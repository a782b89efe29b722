//! Index blocks whose front-coded keys expand: a few KB that stand for gigabytes of keys are
//! refused while what they hold stays within the limit. Its own test binary, so the counting
//! allocator sees this test alone.

use std::alloc::System;

use cap::Cap;
use haypack_format::{Error, MAX_BLOCK_DECODED, decode_block, find_in_block};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// A seed of the `index_block` fuzz target (see `fuzz/examples/seed.rs`, which forges them).
fn seed(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fuzz/seeds/index_block/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn forged_front_coded_keys_are_refused_within_the_limit() {
    // 60,000 keys of 4,093 bytes (245 MB) in 720 KB of columns; 2,000,000 of them (8 GB) in 24 MB.
    let (small, large) = (seed("regression-front-coded-keys-60000"), seed("regression-front-coded-keys-2000000"));
    assert!(small.len() < 16 << 10 && large.len() < 64 << 10, "{} and {} bytes", small.len(), large.len());
    let base = ALLOCATOR.allocated();
    let peak = || ALLOCATOR.max_allocated() - base;

    // A lookup holds the decompressed columns and one key, however long the keys get.
    let key = format!("{}!!#", "k".repeat(4090));
    let found = find_in_block(&small, MAX_BLOCK_DECODED, &key).expect("a lookup in the small block");
    assert_eq!(found.map(|e| e.offset), Some(2));
    assert!(matches!(find_in_block(&large, MAX_BLOCK_DECODED, &key), Err(Error::TooLarge { .. })));
    eprintln!("lookups peaked at {} bytes", peak());
    assert!(peak() < 2 << 20, "lookups peaked at {} bytes", peak());

    for block in [&small, &large] {
        match decode_block(block, MAX_BLOCK_DECODED) {
            Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, MAX_BLOCK_DECODED as u64),
            other => panic!("expected TooLarge, got {:?}", other.map(|e| e.len())),
        }
    }
    eprintln!("decoding peaked at {} bytes", peak());
    // The limit, and the little a failed decode holds besides (its error message).
    assert!(peak() <= MAX_BLOCK_DECODED + (64 << 10), "decoding peaked at {} bytes", peak());
}

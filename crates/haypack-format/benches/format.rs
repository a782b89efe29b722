//! Micro-benchmarks of the format's hot paths: what a lookup costs once its index block is in
//! hand (decode it, then binary-search it) and what a small record costs to encode and decode.
//!
//! `cargo bench -p haypack-format` runs them; `cargo bench --no-run` only builds them.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use haypack_format::{
    Compression, Entry, RecordMeta, Timestamp, decode_block, decode_record, encode_block, encode_record, find_in_block,
};

/// A block as the packer cuts them: entries until keys plus 24 bytes each reach 256 KiB, which
/// is the packer's `INDEX_BLOCK_TARGET` (the format crate cannot see the packer's constant).
fn full_block() -> Vec<Entry> {
    let (mut entries, mut bytes, mut offset) = (Vec::new(), 0, 0);
    let mut i = 0u64;
    while bytes < 256 * 1024 {
        let key = format!("d{:02}/f{i:07}.{}", i % 100, ["txt", "json", "bin"][(i % 3) as usize]);
        // Sizes vary like a real tree's, so the length columns are not trivially compressible.
        let len = 150 + (i * 7919) % 9000;
        bytes += key.len() + 24;
        entries.push(Entry {
            key,
            pack: 1,
            offset,
            len,
            raw_len: len * 2,
            mtime: Timestamp { secs: 1_700_000_000 + (i % 5000) as i64, nanos: 0 },
            mode: 0o644,
            content_type: Some(["text/plain", "application/json", "application/octet-stream"][(i % 3) as usize].into()),
        });
        offset += len;
        i += 1;
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries
}

fn index_block(c: &mut Criterion) {
    let entries = full_block();
    let block = encode_block(&entries).expect("encodes");
    let probe: Vec<&str> = entries.iter().step_by(entries.len() / 64).map(|e| e.key.as_str()).collect();
    println!(
        "index block: {} entries, {} bytes, {:.2} bytes/entry",
        entries.len(),
        block.len(),
        block.len() as f64 / entries.len() as f64
    );
    let mut g = c.benchmark_group("index_block");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("encode", |b| b.iter(|| encode_block(black_box(&entries)).expect("encodes")));
    g.bench_function("decode", |b| b.iter(|| decode_block(black_box(&block), 64 << 20).expect("decodes")));
    g.throughput(Throughput::Elements(1));
    // A cold lookup's CPU part: decode the block, then find the key in it.
    g.bench_function("decode_and_search", |b| {
        let mut n = 0;
        b.iter(|| {
            let decoded = decode_block(black_box(&block), 64 << 20).expect("decodes");
            n = (n + 1) % probe.len();
            decoded.binary_search_by(|e| e.key.as_str().cmp(probe[n])).is_ok()
        })
    });
    // A lookup in a block kept compressed only (the decoded cache is full): search it as it
    // decodes, building only the entry found.
    g.bench_function("find_compressed", |b| {
        let mut n = 0;
        b.iter(|| {
            n = (n + 1) % probe.len();
            find_in_block(black_box(&block), 64 << 20, probe[n]).expect("decodes").is_some()
        })
    });
    // A warm lookup's CPU part: the block is cached decoded, so only the search remains.
    g.bench_function("search_decoded", |b| {
        let mut n = 0;
        b.iter(|| {
            n = (n + 1) % probe.len();
            black_box(&entries).binary_search_by(|e| e.key.as_str().cmp(probe[n])).is_ok()
        })
    });
    g.finish();
}

/// Deterministic content of three kinds, like scripts/gen-corpus.py writes.
fn content(kind: &str, n: usize) -> Vec<u8> {
    let mut rng = haypack_testkit::XorShift::new(1);
    let mut next = move || rng.next_u64();
    match kind {
        "text" => {
            let words = ["the", "archive", "pack", "record", "index", "of", "small", "file", "and", "latency"];
            let mut out = Vec::with_capacity(n + 16);
            while out.len() < n {
                out.extend_from_slice(words[(next() % words.len() as u64) as usize].as_bytes());
                out.push(if next() % 10 == 0 { b'\n' } else { b' ' });
            }
            out.truncate(n);
            out
        }
        "json" => {
            let mut out = Vec::with_capacity(n + 128);
            let mut id = 0;
            while out.len() < n {
                id += 1;
                out.extend_from_slice(
                    format!(
                        "{{\"id\": {id}, \"price\": {}.{:02}, \"in_stock\": {}}},\n",
                        next() % 500,
                        next() % 100,
                        next() % 2 == 0
                    )
                    .as_bytes(),
                );
            }
            out.truncate(n);
            out
        }
        _ => (0..n).map(|_| next() as u8).collect(),
    }
}

fn records(c: &mut Criterion) {
    let meta = RecordMeta {
        key: "d07/f0001234.json".into(),
        mtime: Timestamp { secs: 1_700_000_000, nanos: 0 },
        mode: 0o644,
        content_type: Some("application/json".into()),
    };
    let mut g = c.benchmark_group("record");
    for (kind, size) in [("text", 1_000), ("json", 3_000), ("json", 30_000), ("binary", 3_000)] {
        let raw = content(kind, size);
        let (_, record) = encode_record(Compression::default(), meta.clone(), &raw).expect("encodes");
        let id = format!("{kind}/{size}");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("encode", &id), &raw, |b, raw| {
            b.iter(|| encode_record(Compression::default(), meta.clone(), black_box(raw)).expect("encodes"))
        });
        g.bench_with_input(BenchmarkId::new("decode", &id), &record, |b, record| {
            b.iter(|| decode_record(black_box(record)).expect("decodes"))
        });
    }
    g.finish();
}

criterion_group!(benches, index_block, records);
criterion_main!(benches);

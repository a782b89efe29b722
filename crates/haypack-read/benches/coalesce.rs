//! Micro-benchmark of range coalescing: how long `get_many` takes to turn N index entries into
//! range requests (sort by pack and offset, merge neighbours), before any byte is read.
//!
//! `cargo bench -p haypack-read` runs it; `cargo bench --no-run` only builds it.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use haypack_format::{Entry, Timestamp};
use haypack_read::plan_counts;

/// `n` records spread over 8 packs of ~3 KB records, in key order (not pack order), and every
/// `stride`-th one kept: stride 1 is a whole-archive extract (everything merges), a large stride
/// is a sparse selection (gaps over 1 MiB split the runs).
fn entries(n: usize, stride: usize) -> Vec<Entry> {
    let mut offsets = [0u64; 8];
    let mut rng = haypack_testkit::XorShift::new(2);
    (0..n * stride)
        .map(|i| {
            let x = rng.next_u64();
            let pack = (i % 8) as u32;
            let len = 200 + x % 6000;
            let offset = offsets[pack as usize];
            offsets[pack as usize] += len;
            Entry {
                key: format!("d{:02}/f{i:07}.json", i % 100),
                pack: pack + 1,
                offset,
                len,
                raw_len: len * 2,
                mtime: Timestamp::default(),
                mode: 0o644,
                content_type: None,
            }
        })
        .step_by(stride)
        .collect()
}

fn coalesce(c: &mut Criterion) {
    let mut g = c.benchmark_group("coalesce");
    for (n, stride) in [(10_000, 1), (100_000, 1), (10_000, 1000)] {
        let input = entries(n, stride);
        let (runs, _) = plan_counts(input.clone());
        println!("coalesce {n} entries, every {stride}th: {runs} requests");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("plan", format!("{n}/stride{stride}")), &input, |b, input| {
            // The clone is part of what get_many's caller pays too: it hands over owned entries.
            b.iter(|| plan_counts(black_box(input.clone())))
        });
    }
    g.finish();
}

criterion_group!(benches, coalesce);
criterion_main!(benches);

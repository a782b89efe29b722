//! Lookup cost and latency of a local archive, for `scripts/bench.sh`: `lookups ARCHIVE [N]`.
//!
//! Reads go through the `Counting` store wrapper, so request counts are measured, not assumed.
//! For N random keys (a fixed seed, so runs are comparable) it times `get` on one warm reader,
//! one after another; for N/10 of them it opens a fresh reader per key (cold: manifest, then the
//! index block, then the record) and counts what `stat` and `get` read. It also splits the
//! archive index's bytes into what the keys cost and what the rest costs, by encoding each
//! block again with only its keys. Prints `name value` lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use haypack_format::{Entry, encode_block};
use haypack_read::Archive;
use haypack_store::{Counting, LocalStore};

fn percentile_us(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

/// What a block's keys cost: the block encoded again with only its keys (every other column
/// zero, which compresses to almost nothing).
fn key_cost(entries: &[Entry]) -> Result<u64, haypack_format::Error> {
    let keys: Vec<Entry> = entries.iter().map(|e| Entry { key: e.key.clone(), ..Entry::default() }).collect();
    Ok(encode_block(&keys)?.len() as u64)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: lookups ARCHIVE [N]")?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let store = Arc::new(Counting::new(LocalStore::new(&path)));

    let archive = Archive::open(store.clone()).await?;
    let index = &archive.manifest().index;
    let (mut keys, mut block, mut key_bytes) = (Vec::new(), Vec::new(), 0u64);
    let mut sizes = index.blocks.iter().map(|b| b.records as usize);
    let mut left = sizes.next().unwrap_or(0);
    let mut failed = None;
    archive
        .scan("", |e| {
            keys.push(e.key.clone());
            block.push(e.clone());
            left = left.saturating_sub(1);
            if left == 0 {
                match key_cost(&block) {
                    Ok(k) => key_bytes += k,
                    Err(e) => failed = Some(e),
                }
                block.clear();
                left = sizes.next().unwrap_or(0);
            }
            true
        })
        .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if keys.is_empty() {
        return Err("the archive has no records".into());
    }
    let records = keys.len() as f64;
    println!("records {}", keys.len());
    let index_bytes = archive.live_index_bytes().await?;
    println!("index_bytes {index_bytes}");
    println!("index_blocks {}", index.blocks.len());
    println!("index_bytes_per_record {:.3}", index_bytes as f64 / records);
    println!("index_key_bytes {key_bytes}");
    println!("index_nonkey_bytes_per_record {:.3}", index_bytes.saturating_sub(key_bytes) as f64 / records);

    let mut rng = haypack_testkit::XorShift::new(2);
    let picks: Vec<&String> = (0..n).map(|_| &keys[rng.below(keys.len() as u64) as usize]).collect();

    // Warm: one reader whose block cache already holds what the scan read, as in a long-lived
    // server; a get is then one range read of a pack.
    let mut warm = Vec::with_capacity(n);
    let mut bytes = 0u64;
    store.reset();
    let started = Instant::now();
    for key in &picks {
        let t = Instant::now();
        bytes += archive.get(key).await?.len() as u64;
        warm.push(t.elapsed());
    }
    let total = started.elapsed();
    let warm_reads = store.counts().reads() as f64 / n as f64;

    // Cold: a fresh reader per key, so nothing is cached; `stat` alone shows the index reads.
    let cold_n = (n / 10).max(1);
    let (mut cold, mut block_reads, mut cold_reads) = (Vec::with_capacity(cold_n), 0u64, 0u64);
    for key in picks.iter().take(cold_n) {
        store.reset();
        let t = Instant::now();
        let fresh = Archive::open(store.clone()).await?;
        let opened = store.counts().reads();
        fresh.stat(key).await?;
        block_reads += store.counts().reads() - opened;
        fresh.get(key).await?;
        cold.push(t.elapsed());
        cold_reads += store.counts().reads();
    }

    println!("gets {n}");
    println!("gets_per_s {:.0}", n as f64 / total.as_secs_f64());
    println!("read_mib {:.1}", bytes as f64 / 1048576.0);
    println!("warm_get_p50_us {:.1}", percentile_us(&mut warm, 0.5));
    println!("warm_get_p99_us {:.1}", percentile_us(&mut warm, 0.99));
    println!("warm_reads_per_get {warm_reads:.3}");
    println!("cold_gets {cold_n}");
    println!("cold_get_p50_us {:.1}", percentile_us(&mut cold, 0.5));
    println!("cold_get_p99_us {:.1}", percentile_us(&mut cold, 0.99));
    println!("cold_block_reads_per_lookup {:.3}", block_reads as f64 / cold_n as f64);
    println!("cold_reads_per_get {:.3}", cold_reads as f64 / cold_n as f64);
    Ok(())
}

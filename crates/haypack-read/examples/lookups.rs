//! Lookup cost and latency of a local archive, for `scripts/bench.sh` and
//! `scripts/bench-scale.sh`: `lookups ARCHIVE [N] [--change K]`.
//!
//! Reads go through the `Counting` store wrapper, so request counts are measured, not assumed.
//! It lists the whole archive (timing the first key and the rate), then for N random keys (a
//! fixed seed, so runs are comparable) times `get` on one warm reader (its index memory at the
//! default bound), one after another; for N/10 of them it opens a fresh reader per key (cold:
//! manifest, a branch if any, a page, the record) and counts the requests and bytes `stat` and
//! `get` read. It splits the archive index's bytes into what the keys cost and what the rest
//! costs, by encoding each page's entries again with only their keys. With `--change K` it then
//! adds K new keys spread over the archive and removes K others, and reports the index bytes
//! each commit read and wrote. Prints `name value` lines.

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let change: Option<usize> = match args.iter().position(|a| a == "--change") {
        Some(i) => Some(args.get(i + 1).ok_or("--change needs a count")?.parse()?),
        None => None,
    };
    let mut args = args.iter().take_while(|a| *a != "--change");
    let path = args.next().ok_or("usage: lookups ARCHIVE [N] [--change K]")?.clone();
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let store = Arc::new(Counting::new(LocalStore::new(&path)));

    // The first key of a listing, from a fresh reader: the manifest, then one page.
    let t = Instant::now();
    let fresh = Archive::open(store.clone()).await?;
    fresh.scan("", |_| false).await?;
    println!("list_first_key_us {:.0}", t.elapsed().as_secs_f64() * 1e6);

    // The whole listing, from a fresh reader: every page read and decoded, every key seen.
    let (t, mut listed) = (Instant::now(), 0u64);
    Archive::open(store.clone()).await?.scan("", |_| (listed += 1, true).1).await?;
    println!("list_keys_per_s {:.0}", listed as f64 / t.elapsed().as_secs_f64());

    let archive = Archive::open(store.clone()).await?;
    println!("manifest_bytes {}", archive.manifest().to_json().len());
    println!("index_root {}", archive.manifest().index.blocks.len());
    let pages = archive.pages().await?;
    let (mut keys, mut block, mut key_bytes) = (Vec::new(), Vec::new(), 0u64);
    let mut sizes = pages.iter().map(|b| b.records as usize);
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
    println!("index_pages {}", pages.len());
    println!("index_bytes_per_record {:.3}", index_bytes as f64 / records);
    println!("index_key_bytes {key_bytes}");
    println!("index_nonkey_bytes_per_record {:.3}", index_bytes.saturating_sub(key_bytes) as f64 / records);

    let mut rng = haypack_testkit::XorShift::new(2);
    let picks: Vec<&String> = (0..n).map(|_| &keys[rng.below(keys.len() as u64) as usize]).collect();

    // Warm: one long-lived reader, as in a server: its caches fill as it goes (a first pass
    // over the picks), up to their bounds; a get is then one range read of a pack, plus a leaf
    // when the index is larger than the reader keeps.
    for key in &picks {
        archive.get(key).await?;
    }
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
    let (mut cold, mut block_reads, mut cold_reads, mut cold_bytes) = (Vec::with_capacity(cold_n), 0u64, 0u64, 0u64);
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
        cold_bytes += store.counts().bytes_read;
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
    println!("cold_bytes_per_get {:.0}", cold_bytes as f64 / cold_n as f64);
    if let Some(k) = change {
        changes(&path, &keys, k).await?;
    }
    Ok(())
}

/// Adds `k` new keys spread evenly over the archive, then removes `k` others, then does the
/// same with `k` keys next to each other (after the middle key), and prints the index bytes
/// each commit read and wrote (the index object it added).
async fn changes(path: &str, keys: &[String], k: usize) -> Result<(), Box<dyn std::error::Error>> {
    use haypack_pack::{Content, Record};
    let store = Arc::new(Counting::new(LocalStore::new(path)));
    let spread = (keys.len() / k).max(1);
    let index_objects = |m: &haypack_format::Manifest| -> std::collections::HashMap<String, u64> {
        m.index.objects.iter().map(|o| (o.name.clone(), o.size)).collect()
    };
    for (what, step) in [("add", spread), ("rm", spread), ("add_clustered", 1), ("rm_clustered", 1)] {
        let from = if step == 1 { keys.len() / 2 } else { 0 };
        let before = index_objects(Archive::open(store.clone()).await?.manifest());
        store.reset();
        let t = Instant::now();
        if what.starts_with("add") {
            let opts = haypack_pack::PackOptions::default();
            let mut writer = haypack_pack::Writer::open(store.clone(), opts, Arc::new(())).await?;
            for key in keys.iter().skip(from).step_by(step).take(k) {
                let content = Content::Bytes(format!("added after {key}\n").into_bytes());
                writer.write(Record {
                    key: format!("{key}~"),
                    mtime: None,
                    mode: None,
                    content_type: None,
                    content,
                })?;
            }
            writer.commit().await?;
        } else {
            let doomed: Vec<String> = keys.iter().skip(from + step / 2).step_by(step).take(k).cloned().collect();
            haypack_pack::remove(store.clone(), &doomed, &[], false).await?;
        }
        let elapsed = t.elapsed();
        let read = store.counts().index_bytes_read;
        let after = Archive::open(store.clone()).await?;
        let written: u64 = (index_objects(after.manifest()).into_iter())
            .filter(|(name, _)| !before.contains_key(name))
            .map(|(_, size)| size)
            .sum();
        println!("{what}_{k}_index_bytes_read {read}");
        println!("{what}_{k}_index_bytes_written {written}");
        println!("{what}_{k}_s {:.2}", elapsed.as_secs_f64());
    }
    Ok(())
}

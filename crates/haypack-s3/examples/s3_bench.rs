//! Read-side S3 measurements for `scripts/bench.sh s3`:
//! `s3_bench ARCHIVE_URL LOOSE_URL SAMPLES EXTRACT_DIR`.
//!
//! The endpoint and credentials come from the standard AWS environment. Measures, over the same
//! random keys: a cold `get` (a fresh reader: manifest, index block, record), a warm `get` (index
//! cached: one ranged GET), and a GET of the same file stored as a loose object under LOOSE_URL
//! (keys as uploaded by `s5cmd cp DIR/* LOOSE_URL/`); then a whole-archive extract with its GET
//! count. Prints `name value` lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use haypack_read::Archive;
use haypack_s3::{S3Options, S3Store};
use haypack_store::{Counting, Store};

/// Objects up to this size Garage stores inline in its metadata (its `INLINE_THRESHOLD`).
const GARAGE_INLINE: usize = 3072;

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive_url, loose_url, samples, extract_dir] = &args[..] else {
        return Err("usage: s3_bench ARCHIVE_URL LOOSE_URL SAMPLES EXTRACT_DIR".into());
    };
    let samples: usize = samples.parse()?;
    let store = Arc::new(Counting::new(S3Store::connect(archive_url, S3Options::default()).await?));
    let loose = S3Store::connect(loose_url, S3Options::default()).await?;

    let archive = Archive::open(store.clone()).await?;
    let keys: Vec<String> = archive.list("").await?.into_iter().map(|e| e.key).collect();
    let mut rng = haypack_testkit::XorShift::new(1);
    let picks: Vec<&String> = (0..samples).map(|_| &keys[rng.below(keys.len() as u64) as usize]).collect();

    let (mut cold, mut warm, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    store.reset();
    for key in picks.iter().take(200) {
        let t = Instant::now();
        let fresh = Archive::open(store.clone()).await?;
        fresh.get(key).await?;
        cold.push(t.elapsed());
    }
    let cold_reads = store.counts().reads() as f64 / cold.len() as f64;
    store.reset();
    for key in &picks {
        let t = Instant::now();
        archive.get(key).await?;
        warm.push(t.elapsed());
    }
    let warm_reads = store.counts().reads() as f64 / warm.len() as f64;
    // Garage keeps objects below its inline threshold (3 KiB) in its metadata and answers them
    // in one write; larger ones come from its data blocks, as every pack range does. The two
    // groups are timed apart so the comparison with a ranged read of a pack can be like for like.
    let (mut inline, mut blocks) = (Vec::new(), Vec::new());
    for key in &picks {
        let t = Instant::now();
        let len = loose.get(key).await?.len();
        direct.push(t.elapsed());
        if len <= GARAGE_INLINE { inline.push(t.elapsed()) } else { blocks.push(t.elapsed()) }
    }
    println!("keys {}", keys.len());
    println!("cold_get_p50_ms {:.3}", percentile(&mut cold, 0.5));
    println!("cold_get_p99_ms {:.3}", percentile(&mut cold, 0.99));
    println!("cold_get_requests {cold_reads:.2}");
    println!("warm_get_p50_ms {:.3}", percentile(&mut warm, 0.5));
    println!("warm_get_p99_ms {:.3}", percentile(&mut warm, 0.99));
    println!("warm_get_requests {warm_reads:.2}");
    println!("loose_get_p50_ms {:.3}", percentile(&mut direct, 0.5));
    println!("loose_get_p99_ms {:.3}", percentile(&mut direct, 0.99));
    for (name, times) in [("inline", &mut inline), ("blocks", &mut blocks)] {
        if !times.is_empty() {
            println!("loose_{name}_count {}", times.len());
            println!("loose_{name}_get_p50_ms {:.3}", percentile(times, 0.5));
        }
    }

    store.reset();
    let t = Instant::now();
    let fresh = Archive::open(store.clone()).await?;
    let report = fresh.extract(std::path::Path::new(extract_dir), "", |_| {}).await?;
    println!("extract_s {:.3}", t.elapsed().as_secs_f64());
    println!("extract_files {}", report.files);
    println!("extract_requests {}", store.counts().reads());
    println!("extract_bytes_read {}", store.counts().bytes_read);
    println!("pack_bytes {}", fresh.manifest().pack_bytes());
    Ok(())
}

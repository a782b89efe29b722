//! Times random `get`s through the library: `random_gets ARCHIVE [N]`.
//!
//! Opens a local archive, picks N keys at random (a fixed seed, so runs are comparable) and reads
//! each with `Archive::get`, one after another. Prints the total and per-get percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use haypack_read::Archive;
use haypack_store::LocalStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: random_gets ARCHIVE [N]")?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000);

    let opened = Instant::now();
    let archive = Archive::open(Arc::new(LocalStore::new(path))).await?;
    let keys: Vec<String> = archive.list("").await?.into_iter().map(|e| e.key).collect();
    let setup = opened.elapsed();
    if keys.is_empty() {
        return Err("the archive has no records".into());
    }
    let mut rng = haypack_testkit::XorShift::new(2);
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0u64;
    let started = Instant::now();
    for _ in 0..n {
        let key = &keys[rng.below(keys.len() as u64) as usize];
        let t = Instant::now();
        bytes += archive.get(key).await?.len() as u64;
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{n} random gets of {} keys: {:.3} s total, {:.0} gets/s, {:.1} MiB read; per get p50 {:.1} us, p99 {:.1} us, max {:.1} us (open + list {:.3} s)",
        keys.len(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        bytes as f64 / 1048576.0,
        us(pct(0.5)),
        us(pct(0.99)),
        us(times[times.len() - 1]),
        setup.as_secs_f64(),
    );
    Ok(())
}

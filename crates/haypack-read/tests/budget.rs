//! Reading a record that stores kilobytes and decodes to a gigabyte holds a bounded amount of
//! memory on every path (get, extract through get_many, verify), measured as the rise of the
//! process's peak resident size. A test binary of its own, its measurements one at a time, so
//! that the peak is this read's.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use haypack_format::{Budget, Compression, Container};
use haypack_pack::PackOptions;
use haypack_read::Archive;
use haypack_store::{LocalStore, Store};
use haypack_testkit::PeakMemory;

/// The all-zero record: 256 MiB, eight times the bound, packed from a sparse file. (Larger
/// records cost more time in an unoptimised test build and show nothing more: what a chunked read
/// holds does not depend on the length.)
const ZEROS: u64 = 256 << 20;

/// What a chunked read may add to the peak: one chunk, one step, the zstd window these records
/// were compressed with (8 MiB at most at level 1), and room for the test's own allocations.
/// Decoding the record whole would add all of it.
const BOUND: u64 = Budget::CHUNK + Budget::STEP as u64 + (8 << 20) + (16 << 20);

/// One measurement at a time: the peak is the process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An archive in `container` holding `zeros.bin` (ZEROS zero bytes) and `small.txt`, packed
/// once into the target directory and reused by later tests and runs (packing is deterministic,
/// and a manifest means a finished pack).
fn zeros_archive(container: Container) -> Arc<dyn Store> {
    static PACKED: OnceLock<()> = OnceLock::new();
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("read-budget-zeros-{}", container.name()));
    let other = Path::new(env!("CARGO_TARGET_TMPDIR")).join("read-budget-zeros-src");
    let pack_both = || {
        for container in [Container::Zstd, Container::Gzip] {
            let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("read-budget-zeros-{}", container.name()));
            if dest.join("manifest.json").exists() {
                continue;
            }
            std::fs::create_dir_all(&other).unwrap();
            std::fs::File::create(other.join("zeros.bin")).unwrap().set_len(ZEROS).unwrap();
            std::fs::write(other.join("small.txt"), "small").unwrap();
            let compression = Compression { container, level: 1, compress: true };
            let opts = PackOptions { compression, force: true, ..PackOptions::default() };
            let store = Arc::new(LocalStore::new(&dest));
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(haypack_pack::pack(&other, store, opts, Arc::new(()))).unwrap();
        }
        drop(std::fs::remove_dir_all(&other));
    };
    // Its own thread: the tests' runtimes may not block on another.
    PACKED.get_or_init(|| std::thread::scope(|s| s.spawn(pack_both).join().unwrap()));
    Arc::new(LocalStore::new(dest))
}

async fn open(container: Container) -> Archive {
    let archive = Archive::open(zeros_archive(container)).await.unwrap();
    let entry = archive.stat("zeros.bin").await.unwrap();
    assert!(!Budget::whole(entry.len, entry.raw_len) && entry.len < Budget::WHOLE, "stores little: {entry:?}");
    archive
}

/// Counts what is written and checks it is all zeros, keeping none of it.
#[derive(Default)]
struct Zeros(u64);

impl Write for Zeros {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        assert!(buf.iter().all(|&b| b == 0));
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `read` alone and asserts the peak rose by less than [`BOUND`].
async fn bounded<F: std::future::Future<Output = ()>>(what: &str, read: impl FnOnce() -> F) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let peak = PeakMemory::start().expect("the peak is measured from /proc/self/status (Linux)");
    read().await;
    let grown = peak.grown();
    assert!(grown < BOUND, "{what}: the peak rose by {} MiB, the bound is {} MiB", grown >> 20, BOUND >> 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_streams_a_huge_compressible_record_within_the_budget() {
    for container in [Container::Zstd, Container::Gzip] {
        let archive = open(container).await;
        bounded(&format!("get_to, {container:?}"), || async {
            let mut out = Zeros::default();
            archive.get_to("zeros.bin", &mut out).await.unwrap();
            assert_eq!(out.0, ZEROS);
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_many_and_extract_stream_a_huge_compressible_record_within_the_budget() {
    let archive = open(Container::Gzip).await;
    let target = tempfile::tempdir().unwrap();
    bounded("extract", || async {
        let report = archive.extract(target.path(), "", |_| {}).await.unwrap();
        assert_eq!((report.files, report.bytes), (2, ZEROS + 5));
    })
    .await;
    assert_eq!(std::fs::metadata(target.path().join("zeros.bin")).unwrap().len(), ZEROS);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_checks_a_huge_compressible_record_within_the_budget() {
    for container in [Container::Zstd, Container::Gzip] {
        let archive = open(container).await;
        bounded(&format!("verify, {container:?}"), || async {
            let report = archive.verify().await.unwrap();
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            assert_eq!(report.records, 2);
        })
        .await;
    }
}

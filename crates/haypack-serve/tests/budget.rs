//! The gateway answering for a record that stores kilobytes and decodes to a gigabyte-class
//! length holds a bounded amount of memory in every way it answers (decoded, gzip as stored,
//! zstd), measured as the rise of the process's peak resident size while curl downloads it. A
//! test binary of its own, its measurements one at a time, so that the peak is this answer's.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;
use std::sync::{Arc, OnceLock};

use haypack_format::{Budget, Compression, Container};
use haypack_pack::PackOptions;
use haypack_serve::{ServeOptions, Server, opener};
use haypack_store::{LocalStore, Store};
use haypack_testkit::PeakMemory;

/// The all-zero record: 256 MiB, eight times the bound, packed from a sparse file. (Larger
/// records cost more time in an unoptimised test build and show nothing more: what an answer
/// holds does not depend on the length.)
const ZEROS: u64 = 256 << 20;

/// What one answer may add to the peak: one chunk, a few steps in flight to the socket, the
/// zstd window these records were compressed with (8 MiB at most at level 1), and room for the
/// server's own allocations. Decoding the record whole would add all of it.
const BOUND: u64 = Budget::CHUNK + 4 * Budget::STEP as u64 + (8 << 20) + (16 << 20);

/// One measurement at a time: the peak is the process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An archive in `container` holding `zeros.bin` (ZEROS zero bytes), packed once into the
/// target directory and reused by later tests and runs (packing is deterministic, and a
/// manifest means a finished pack).
fn zeros_archive(container: Container) -> Arc<dyn Store> {
    static PACKED: OnceLock<()> = OnceLock::new();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let pack_both = || {
        let src = tmp.join("serve-budget-zeros-src");
        for container in [Container::Zstd, Container::Gzip] {
            let dest = tmp.join(format!("serve-budget-zeros-{}", container.name()));
            if dest.join("manifest.json").exists() {
                continue;
            }
            std::fs::create_dir_all(&src).unwrap();
            std::fs::File::create(src.join("zeros.bin")).unwrap().set_len(ZEROS).unwrap();
            let compression = Compression { container, level: 1, compress: true };
            let opts = PackOptions { compression, force: true, ..PackOptions::default() };
            let store = Arc::new(LocalStore::new(&dest));
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(haypack_pack::pack(&src, store, opts, Arc::new(()))).unwrap();
        }
        drop(std::fs::remove_dir_all(&src));
    };
    // Its own thread: the tests' runtimes may not block on another.
    PACKED.get_or_init(|| std::thread::scope(|s| s.spawn(pack_both).join().unwrap()));
    Arc::new(LocalStore::new(tmp.join(format!("serve-budget-zeros-{}", container.name()))))
}

/// Serves the `container` archive, downloads `zeros.bin` with curl sending `accept` as
/// Accept-Encoding, and asserts the answer and that the peak rose by less than [`BOUND`].
/// Returns the Content-Encoding.
async fn download(container: Container, accept: &str) -> String {
    let options = ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), ..ServeOptions::default() };
    let server = Server::bind(opener(zeros_archive(container), None), options).await.unwrap();
    let url = format!("http://{}/zeros.bin", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        stopped.await.ok();
    }));
    let what = format!("{container:?} pack, Accept-Encoding: {accept:?}");
    let _alone = ONE_AT_A_TIME.lock().await;
    let peak = PeakMemory::start().expect("the peak is measured from /proc/self/status (Linux)");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", "120", "-o", "/dev/null", "-H", &format!("Accept-Encoding: {accept}")])
        .args(["-w", "%{http_code} %{size_download} %header{content-encoding}"])
        .arg(&url)
        .output()
        .await
        .expect("curl runs (scripts/test.sh installs it)");
    let grown = peak.grown();
    drop(stop);
    running.await.unwrap().unwrap();
    let reply = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fields = reply.split(' ');
    let (status, size, coding) = (fields.next(), fields.next(), fields.next().unwrap_or("").to_owned());
    assert_eq!(status, Some("200"), "{what}: {reply} {}", String::from_utf8_lossy(&out.stderr));
    let size: u64 = size.unwrap().parse().unwrap();
    if coding.is_empty() {
        assert_eq!(size, ZEROS, "{what}");
    }
    assert!(grown < BOUND, "{what}: the peak rose by {} MiB, the bound is {} MiB", grown >> 20, BOUND >> 20);
    coding
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_compressible_record_streams_decoded_within_the_budget() {
    assert_eq!(download(Container::Zstd, "identity").await, "");
    assert_eq!(download(Container::Gzip, "identity").await, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_compressible_gzip_record_goes_out_as_stored_checked_within_the_budget() {
    assert_eq!(download(Container::Gzip, "gzip").await, "gzip");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_compressible_zstd_record_answers_a_zstd_client_within_the_budget() {
    // Past the 8 MiB window RFC 9659 asks decoders for: it goes out decoded, streamed.
    assert_eq!(download(Container::Zstd, "zstd, gzip").await, "");
}

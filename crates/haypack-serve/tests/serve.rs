//! The server end to end: a real archive (local, and on Garage), the server on 127.0.0.1:0 in
//! this process, and curl as the client, for every status the gateway answers with.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use haypack_format::{Compression, Container};
use haypack_pack::{PackOptions, PushOptions};
use haypack_s3::testing::TestServer;
use haypack_serve::{Handle, ServeOptions, Server, opener};
use haypack_store::{Counting, LocalStore, ObjectMeta, ObjectWriter, PutMode, Store};
use haypack_testkit::noise;

// ---------------------------------------------------------------------------------------------
// Helpers

/// 25 small JSON records under `a/`, a text file, and a PNG-named file.
fn tree(dir: &Path) {
    for i in 0..25 {
        let path = dir.join(format!("a/{i:03}.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{{\"id\":{i},\"text\":\"{}\"}}\n", "lorem ipsum ".repeat(20))).unwrap();
    }
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("docs/readme.txt"), "0123456789".repeat(100)).unwrap();
    std::fs::create_dir_all(dir.join("img")).unwrap();
    std::fs::write(dir.join("img/logo.png"), noise(3000, 7)).unwrap();
}

fn stored() -> Compression {
    Compression { container: Container::Zstd, level: 0, compress: false }
}

async fn pack(src: &Path, store: Arc<dyn Store>, compression: Compression, force: bool) {
    let opts = PackOptions { compression, force, ..PackOptions::default() };
    haypack_pack::pack(src, store, opts, Arc::new(())).await.unwrap();
}

struct Running {
    url: String,
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<haypack_serve::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        drop(self.stop.take());
        self.task.await.unwrap().unwrap();
    }
}

async fn start(store: Arc<dyn Store>, options: ServeOptions) -> Running {
    let options = ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), ..options };
    let server = Server::bind(opener(store, None), options).await.unwrap();
    let url = format!("http://{}", server.local_addr());
    let handle = server.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        stopped.await.ok();
    }));
    Running { url, handle, stop: Some(stop), task }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One request with curl; `path` is sent as written (no `..` squashing).
async fn curl(url: &str, path: &str, args: &[&str]) -> Reply {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--path-as-is", "-i", "--max-time", "60"])
        .args(args)
        .arg(format!("{url}{path}"))
        .output()
        .await
        .expect("curl runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    parse_reply(&out.stdout)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// Every status, on any store

/// Checks every status the gateway gives for the archive packed from `tree`; `counts`, when
/// given, is the store the server reads through, to hold warm requests to one read each.
async fn every_status(url: &str, src: &Path, counts: Option<&dyn Fn() -> u64>) {
    let json = std::fs::read(src.join("a/003.json")).unwrap();

    let ok = curl(url, "/a/003.json", &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, json);
    assert_eq!(ok.header("content-type"), Some("application/json"));
    assert_eq!(ok.header("content-length"), Some(json.len().to_string().as_str()));
    assert_eq!(ok.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(ok.header("accept-ranges"), Some("bytes"));
    let etag = ok.header("etag").unwrap().to_owned();
    assert_eq!(etag, format!("\"{:08x}-{:x}\"", crc32c::crc32c(&json), json.len()));
    let last_modified = ok.header("last-modified").unwrap().to_owned();
    let mtime = std::fs::metadata(src.join("a/003.json")).unwrap().modified().unwrap();
    assert_eq!(last_modified, httpdate::fmt_http_date(mtime));

    // Warm from here on: each request costs one read of the store, whatever it asks.
    let reads = || counts.map(|c| c());
    let before = reads();
    let head = curl(url, "/a/004.json", &["-I"]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some(json.len().to_string().as_str()));
    assert!(head.header("etag").is_some() && head.header("last-modified").is_some());
    if let Some(before) = before {
        assert_eq!(reads(), Some(before + 1), "a warm HEAD costs one range read");
    }

    let before = reads();
    let inm = curl(url, "/a/003.json", &["-H", &format!("If-None-Match: {etag}")]).await;
    assert_eq!((inm.status, inm.body.len()), (304, 0));
    assert_eq!(inm.header("etag"), Some(etag.as_str()));
    let ims = curl(url, "/a/003.json", &["-H", &format!("If-Modified-Since: {last_modified}")]).await;
    assert_eq!((ims.status, ims.body.len()), (304, 0));
    let stale = curl(url, "/a/003.json", &["-H", "If-None-Match: \"0-0\""]).await;
    assert_eq!((stale.status, stale.body), (200, json.clone()));
    if let Some(before) = before {
        assert_eq!(reads(), Some(before + 3), "one range read per warm GET");
    }

    let part = curl(url, "/a/003.json", &["-H", "Range: bytes=2-9"]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, json[2..10]);
    assert_eq!(part.header("content-range"), Some(format!("bytes 2-9/{}", json.len()).as_str()));
    let tail = curl(url, "/a/003.json", &["-H", "Range: bytes=-5"]).await;
    assert_eq!((tail.status, tail.body.as_slice()), (206, &json[json.len() - 5..]));
    let beyond = curl(url, "/a/003.json", &["-H", &format!("Range: bytes={}-", json.len())]).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some(format!("bytes */{}", json.len()).as_str()));
    let stale_range = curl(url, "/a/003.json", &["-H", "Range: bytes=0-0", "-H", "If-Range: \"0-0\""]).await;
    assert_eq!((stale_range.status, stale_range.body), (200, json.clone()));

    let png = curl(url, "/img/logo.png", &[]).await;
    assert_eq!(png.status, 200);
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(png.body, std::fs::read(src.join("img/logo.png")).unwrap());

    for missing in ["/a/999.json", "/a", "/A/003.json", "/%252e%252e/a/003.json"] {
        assert_eq!(curl(url, missing, &[]).await.status, 404, "{missing}");
    }
    for escape in [
        "/../../../../etc/passwd",
        "/a/../a/003.json",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/a%2F003.json",
        "/a%2f..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/a//003.json",
        "/a\\003.json",
        "/a%5C003.json",
        "/a/003.json%00",
        "/./a/003.json",
    ] {
        let r = curl(url, escape, &[]).await;
        assert_eq!(r.status, 400, "{escape}: {}", String::from_utf8_lossy(&r.body));
        assert!(!String::from_utf8_lossy(&r.body).contains("root:"), "{escape} served a host file");
    }
    assert_eq!(curl(url, "/a/003.json", &["-X", "POST"]).await.status, 405);

    let health = curl(url, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["records"], 27);
}

/// Pages through `a/` ten keys at a time, then checks the edges of listing.
async fn listing(url: &str) {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/?prefix=a%2F&limit=10".to_owned();
        if let Some(a) = &after {
            path += &format!("&after={}", a.replace('/', "%2F"));
        }
        let page = curl(url, &path, &[]).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), Some("application/json"));
        let v = page.json();
        pages += 1;
        keys.extend(v["keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap().to_owned()));
        match v["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(keys, (0..25).map(|i| format!("a/{i:03}.json")).collect::<Vec<_>>());

    let all = curl(url, "/", &[]).await.json();
    assert_eq!(all["keys"].as_array().unwrap().len(), 27);
    assert_eq!(all["next"], serde_json::Value::Null);
    let first = &all["keys"][0];
    assert_eq!(first["key"], "a/000.json");
    assert_eq!(first["content_type"], "application/json");
    assert!(first["size"].as_u64().unwrap() > 200);
    assert!(curl(url, "/?prefix=zzz", &[]).await.json()["keys"].as_array().unwrap().is_empty());
    assert_eq!(curl(url, "/?limit=0", &[]).await.status, 400);
    assert_eq!(curl(url, "/?limit=many", &[]).await.status, 400);
}

/// Gzip records go out as stored to clients that take gzip, and decoded to the rest.
async fn gzip_pass_through(url: &str, src: &Path) {
    let json = std::fs::read(src.join("a/007.json")).unwrap();
    let gz = curl(url, "/a/007.json", &["-H", "Accept-Encoding: gzip"]).await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("accept-encoding"));
    assert!(gz.header("etag").unwrap().ends_with("-gzip\""));
    assert!(gz.body.len() < json.len(), "sent compressed");
    assert_eq!(gunzip(&gz.body), json);
    let gz_head = curl(url, "/a/007.json", &["-I", "-H", "Accept-Encoding: gzip"]).await;
    assert_eq!(gz_head.header("content-length"), Some(gz.body.len().to_string().as_str()));
    let etag = gz.header("etag").unwrap();
    let again =
        curl(url, "/a/007.json", &["-H", "Accept-Encoding: gzip", "-H", &format!("If-None-Match: {etag}")]).await;
    assert_eq!(again.status, 304);

    let plain = curl(url, "/a/007.json", &["-H", "Accept-Encoding: gzip;q=0, identity"]).await;
    assert_eq!((plain.status, plain.header("content-encoding"), &plain.body), (200, None, &json));
    let ranged = curl(url, "/a/007.json", &["-H", "Accept-Encoding: gzip", "-H", "Range: bytes=0-3"]).await;
    assert_eq!((ranged.status, ranged.header("content-encoding"), ranged.body.as_slice()), (206, None, &json[..4]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_archive_answers_every_status() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let dest = tempfile::tempdir().unwrap();
    pack(src.path(), Arc::new(LocalStore::new(dest.path())), Compression::default(), false).await;
    let store = Arc::new(Counting::new(LocalStore::new(dest.path())));
    let server = start(store.clone(), ServeOptions::default()).await;
    let counts = || store.counts().reads();
    every_status(&server.url, src.path(), Some(&counts)).await;
    listing(&server.url).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_records_pass_through_as_stored() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let dest = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dest.path()));
    let gzip = Compression { container: Container::Gzip, level: 6, compress: true };
    pack(src.path(), store.clone(), gzip, false).await;
    let server = start(store, ServeOptions::default()).await;
    gzip_pass_through(&server.url, src.path()).await;
    // A record the packer stored (it did not shrink) is not a gzip stream worth sending.
    let png = curl(&server.url, "/img/logo.png", &["-H", "Accept-Encoding: gzip"]).await;
    assert_eq!((png.status, png.header("content-encoding")), (200, None));
    assert_eq!(png.body, std::fs::read(src.path().join("img/logo.png")).unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_records_go_out_as_their_zstd_frame_to_clients_that_take_zstd() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let dest = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dest.path()));
    pack(src.path(), store.clone(), Compression::default(), false).await;
    let server = start(store, ServeOptions::default()).await;
    let json = std::fs::read(src.path().join("a/007.json")).unwrap();
    let z = curl(&server.url, "/a/007.json", &["-H", "Accept-Encoding: gzip, deflate, br, zstd"]).await;
    assert_eq!(z.status, 200);
    assert_eq!(z.header("content-encoding"), Some("zstd"));
    assert_eq!(z.header("vary"), Some("accept-encoding"));
    assert!(z.header("etag").unwrap().ends_with("-zstd\""));
    assert!(z.body.len() < json.len());
    assert_eq!(zstd::decode_all(&z.body[..]).unwrap(), json);
    let head = curl(&server.url, "/a/007.json", &["-I", "-H", "Accept-Encoding: zstd"]).await;
    assert_eq!(head.header("content-length"), Some(z.body.len().to_string().as_str()));
    let gz_only = curl(&server.url, "/a/007.json", &["-H", "Accept-Encoding: gzip"]).await;
    assert_eq!((gz_only.header("content-encoding"), &gz_only.body), (None, &json));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_to_hold_is_served_whole_and_ranges_cut_it() {
    let src = tempfile::tempdir().unwrap();
    let big = noise(20 << 20, 3);
    std::fs::write(src.path().join("big.bin"), &big).unwrap();
    let middle: Vec<u8> = (0..3_000_000u32).flat_map(|i| (i % 1000).to_le_bytes()).collect();
    std::fs::write(src.path().join("mid.txt"), &middle).unwrap();
    // Stores a few KiB, decodes to 40 MiB: read whole, but streamed.
    let expands = b"haypack ".repeat(5 << 20);
    std::fs::write(src.path().join("expands.txt"), &expands).unwrap();
    let dest = tempfile::tempdir().unwrap();
    pack(src.path(), Arc::new(LocalStore::new(dest.path())), Compression::default(), false).await;
    let store = Arc::new(Counting::new(LocalStore::new(dest.path())));
    let server = start(store.clone(), ServeOptions::default()).await;
    let all = curl(&server.url, "/big.bin", &[]).await;
    assert_eq!(all.status, 200);
    assert!(all.body == big, "the whole large record, byte for byte");
    // Revalidating a large record reads its header, not its content.
    let etag = all.header("etag").unwrap().to_owned();
    store.reset();
    let cached = curl(&server.url, "/big.bin", &["-H", &format!("If-None-Match: {etag}")]).await;
    assert_eq!(cached.status, 304);
    assert!(store.counts().bytes_read <= 8 << 10, "{:?}", store.counts());
    let (a, b) = (9_000_000usize, 17_500_000usize);
    let part = curl(&server.url, "/big.bin", &["-H", &format!("Range: bytes={a}-{b}")]).await;
    assert_eq!(part.status, 206);
    assert!(part.body == big[a..=b]);
    let tail = curl(&server.url, "/big.bin", &["-H", "Range: bytes=-100"]).await;
    assert!(tail.body == big[big.len() - 100..]);
    // Held whole (under 16 MiB) but decoded off the worker threads (over 1 MiB).
    let mid = curl(&server.url, "/mid.txt", &["-H", "Range: bytes=1000000-1999999"]).await;
    assert_eq!(mid.status, 206);
    assert!(mid.body == middle[1_000_000..2_000_000]);
    let expanded = curl(&server.url, "/expands.txt", &[]).await;
    assert_eq!(expanded.status, 200);
    assert!(expanded.body == expands, "the whole expanding record, byte for byte");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Reloads and shutdown

/// One key `v.txt` with `version`, and an 18 MiB `big.bin` (streamed, so a slow client keeps a
/// request in flight) seeded by it.
fn versioned(dir: &Path, version: u64) -> Vec<u8> {
    std::fs::write(dir.join("v.txt"), format!("version {version}")).unwrap();
    let big = noise(18 << 20, version);
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    big
}

/// Starts a download of `/big.bin` at 6 MB/s (about 3 s) and waits until its response began.
async fn slow_download(url: &str, out: &Path) -> tokio::process::Child {
    let child = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--limit-rate", "6M", "-o"])
        .arg(out)
        .arg(format!("{url}/big.bin"))
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::fs::metadata(out).is_ok_and(|m| m.len() > 0) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the download did not start");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_serves_the_new_generation_while_requests_in_flight_finish_on_theirs() {
    let (src1, src2, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let big1 = versioned(src1.path(), 1);
    versioned(src2.path(), 2);
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dest.path()));
    pack(src1.path(), store.clone(), stored(), false).await;
    let server = start(store.clone(), ServeOptions::default()).await;
    assert_eq!(curl(&server.url, "/v.txt", &[]).await.body, b"version 1");

    let out = tempfile::tempdir().unwrap();
    let mut download = slow_download(&server.url, &out.path().join("big")).await;
    pack(src2.path(), store.clone(), stored(), true).await;
    assert_eq!(server.handle.reload().await.unwrap(), 2);
    assert_eq!(curl(&server.url, "/v.txt", &[]).await.body, b"version 2");
    assert_eq!(curl(&server.url, "/healthz", &[]).await.json()["generation"], 2);
    assert!(download.try_wait().unwrap().is_none(), "the old request is still in flight");
    assert!(download.wait().await.unwrap().success());
    assert!(std::fs::read(out.path().join("big")).unwrap() == big1, "it finished on generation 1");
    // Nothing changed: a reload keeps the generation (and its warm cache).
    assert_eq!(server.handle.reload().await.unwrap(), 2);
    // A reload that fails keeps serving what it served.
    std::fs::remove_file(dest.path().join("manifest.json")).unwrap();
    assert!(server.handle.reload().await.is_err());
    assert_eq!(curl(&server.url, "/v.txt", &[]).await.body, b"version 2");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generation_whose_packs_are_gone_is_replaced_on_the_next_request() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("v.txt"), "version 1").unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dest.path()));
    pack(src.path(), store.clone(), stored(), false).await;
    let server = start(store.clone(), ServeOptions::default()).await;
    let old_packs: Vec<_> = std::fs::read_dir(dest.path().join("packs")).unwrap().map(|e| e.unwrap().path()).collect();
    std::fs::write(src.path().join("v.txt"), "version 2").unwrap();
    pack(src.path(), store.clone(), stored(), true).await;
    // What a `gc` does once no reader should need them any more.
    old_packs.iter().for_each(|p| std::fs::remove_file(p).unwrap());
    assert_eq!(server.handle.generation(), 1);
    let r = curl(&server.url, "/v.txt", &[]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"version 2"[..]));
    assert_eq!(server.handle.generation(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_every_picks_up_a_new_generation_by_itself() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("v.txt"), "version 1").unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dest.path()));
    pack(src.path(), store.clone(), stored(), false).await;
    let options = ServeOptions { reload_every: Some(Duration::from_millis(100)), ..ServeOptions::default() };
    let server = start(store.clone(), options).await;
    std::fs::write(src.path().join("v.txt"), "version 2").unwrap();
    std::fs::write(src.path().join("new.txt"), "new").unwrap();
    pack(src.path(), store.clone(), stored(), true).await;
    // Until the reloader has seen it (a guard, not a budget: it reloads every 100 ms).
    let seen = async {
        while server.handle.generation() != 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), seen).await.expect("the reloader never saw generation 2");
    assert_eq!(curl(&server.url, "/v.txt", &[]).await.body, b"version 2");
    assert_eq!(curl(&server.url, "/new.txt", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_requests_in_flight_finish_and_then_refuses_connections() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let big = versioned(src.path(), 1);
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dest.path()));
    pack(src.path(), store.clone(), stored(), false).await;
    let server = start(store, ServeOptions::default()).await;
    let url = server.url.clone();
    let out = tempfile::tempdir().unwrap();
    let mut download = slow_download(&url, &out.path().join("big")).await;
    server.stop().await;
    assert!(download.wait().await.unwrap().success());
    assert!(std::fs::read(out.path().join("big")).unwrap() == big);
    let refused = tokio::process::Command::new("curl").args(["-s", &format!("{url}/v.txt")]).output().await.unwrap();
    assert!(!refused.status.success(), "no new connections after shutdown");
}

// ---------------------------------------------------------------------------------------------
// Timeouts and the upstream bound

/// A store whose range reads wait until the test opens its gate (never, for a stuck store),
/// and that records how many are inside at once.
#[derive(Debug)]
struct Slow {
    inner: LocalStore,
    open: tokio::sync::watch::Sender<bool>,
    now: AtomicUsize,
    most: AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Slow {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, name: &str) -> haypack_store::Result<Bytes> {
        self.inner.get(name).await
    }
    async fn get_range(&self, name: &str, range: std::ops::Range<u64>) -> haypack_store::Result<Bytes> {
        Ok(self.get_range_pinned(name, range, None).await?.0)
    }
    async fn get_range_pinned(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
        version: Option<&str>,
    ) -> haypack_store::Result<(Bytes, String)> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let _ = self.open.subscribe().wait_for(|open| *open).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.inner.get_range_pinned(name, range, version).await
    }
    async fn head(&self, name: &str) -> haypack_store::Result<ObjectMeta> {
        self.inner.head(name).await
    }
    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> haypack_store::Result<ObjectMeta> {
        self.inner.put(name, data, mode).await
    }
    fn create(&self, name: &str) -> haypack_store::Result<Box<dyn ObjectWriter>> {
        self.inner.create(name)
    }
    async fn list(&self, prefix: &str) -> haypack_store::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, name: &str) -> haypack_store::Result<()> {
        self.inner.delete(name).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_reads_are_bounded_and_slow_ones_time_out() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tree(src.path());
    pack(src.path(), Arc::new(LocalStore::new(dest.path())), Compression::default(), false).await;
    let gated = || {
        Arc::new(Slow {
            inner: LocalStore::new(dest.path()),
            open: tokio::sync::watch::channel(false).0,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        })
    };

    // Eight requests, reads held at the gate: two get in, the others wait for a slot.
    let bounded = gated();
    let server = start(bounded.clone(), ServeOptions { max_upstream: 2, ..ServeOptions::default() }).await;
    let requests: Vec<_> = (0..8)
        .map(|i| {
            let url = server.url.clone();
            tokio::spawn(async move { curl(&url, &format!("/a/{i:03}.json"), &[]).await.status })
        })
        .collect();
    while bounded.now.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    bounded.open.send_replace(true);
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(bounded.most.load(Ordering::SeqCst), 2, "never more upstream reads than the bound");
    server.stop().await;

    // A store that never answers: the request times out (a 504 can come from nothing else).
    let options = ServeOptions { request_timeout: Duration::from_millis(300), ..ServeOptions::default() };
    let server = start(gated(), options).await;
    assert_eq!(curl(&server.url, "/a/001.json", &[]).await.status, 504);
    server.stop().await;
}

/// A client that asks for `path` and takes only the first line of the answer (so the server
/// surely started it), then nothing more: its receive buffer is as small as the system allows,
/// so the server's writes stall at once.
async fn stalled_client(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: haypack\r\n\r\n").as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_stop_reading_hold_no_upstream_slot_and_starve_no_one() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tree(src.path());
    let big = noise(20 << 20, 9);
    std::fs::write(src.path().join("big.bin"), &big).unwrap();
    pack(src.path(), Arc::new(LocalStore::new(dest.path())), Compression::default(), false).await;
    // Far fewer upstream slots than stalled clients: each one holding a slot would leave none.
    let options = ServeOptions { max_upstream: 4, ..ServeOptions::default() };
    let server = start(Arc::new(LocalStore::new(dest.path())), options).await;
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let mut stalled = Vec::new();
    for _ in 0..100 {
        stalled.push(stalled_client(addr, "/big.bin").await);
    }
    let requests = (0..20).map(|i| {
        let url = server.url.clone();
        tokio::spawn(async move { curl(&url, &format!("/a/{i:03}.json"), &[]).await.status })
    });
    for r in requests.collect::<Vec<_>>() {
        assert_eq!(r.await.unwrap(), 200);
    }
    let whole = curl(&server.url, "/big.bin", &[]).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == big, "the large record, whole, while 100 others stall on it");
    drop(stalled);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Garage

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_on_garage_answers_every_status_with_one_get_per_warm_request() {
    let garage = TestServer::get("garage");
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let gzip = Compression { container: Container::Gzip, level: 6, compress: true };
    let local = tempfile::tempdir().unwrap();
    let local_store: Arc<dyn Store> = Arc::new(LocalStore::new(local.path()));
    pack(src.path(), local_store.clone(), gzip, false).await;
    let s3 = garage.store("serve", haypack_s3::MIN_PART_SIZE).await;
    haypack_pack::push(local_store.clone(), Arc::new(s3.clone()), PushOptions::default(), Arc::new(())).await.unwrap();

    let counted = Arc::new(Counting::new(s3.clone()));
    let server = start(counted.clone(), ServeOptions::default()).await;
    let counts = || counted.counts().reads();
    every_status(&server.url, src.path(), Some(&counts)).await;
    listing(&server.url).await;
    gzip_pass_through(&server.url, src.path()).await;

    // A new generation pushed to the bucket is served after a reload.
    std::fs::write(src.path().join("docs/readme.txt"), "rewritten").unwrap();
    pack(src.path(), local_store.clone(), gzip, true).await;
    let push = PushOptions { force: true, ..PushOptions::default() };
    haypack_pack::push(local_store, Arc::new(s3), push, Arc::new(())).await.unwrap();
    assert_eq!(server.handle.reload().await.unwrap(), 2);
    assert_eq!(curl(&server.url, "/docs/readme.txt", &[]).await.body, b"rewritten");
    server.stop().await;
}

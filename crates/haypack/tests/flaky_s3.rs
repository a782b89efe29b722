//! The CLI through a fault-injecting proxy in front of Garage. One request in three goes wrong:
//! a `503 SlowDown`, a connection dropped before the request reaches the server, a body that
//! breaks off halfway, (for a range) a body cut short with a Content-Length to match, or a
//! stall: no answer at all, or half a body and then nothing, until the client gives up. `pack`
//! straight to S3, `push`, `get`, `extract`, `rm` and `compact` must all come through with
//! exactly the bytes they were given, and every generation they commit must verify (checked
//! straight against Garage, not through the proxy). A proxy that ignores `Range` must make reads
//! fail with a named error and write nothing.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use assert_cmd::Command;
use bytes::Bytes;
use haypack_s3::testing::TestServer;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use predicates::prelude::*;

type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// `503 SlowDown`, the request not forwarded.
    SlowDown,
    /// The connection closed with no answer, the request not forwarded.
    Dropped,
    /// The answer's head as the server sent it, then half its body, then the connection breaks.
    BrokenBody,
    /// A range answered with half its bytes and a Content-Length that says so.
    CutRange,
    /// A read answered with its head and half its body, then nothing more; anything else not
    /// answered at all (and not forwarded). Held until the client hangs up.
    Stall,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// One request in three gets a fault, in turn.
    Flaky,
    /// Every answer to a range comes back as `200` without a Content-Range, as from a server
    /// that ignores `Range`. (The request itself keeps its `Range` header: it is signed.)
    IgnoresRange,
}

/// What the proxy did.
#[derive(Debug, Default)]
struct Log {
    requests: AtomicU64,
    faults: Mutex<BTreeMap<Fault, u64>>,
}

/// A proxy on 127.0.0.1 in front of `upstream`, on a runtime of its own.
struct Proxy {
    addr: SocketAddr,
    log: Arc<Log>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(upstream: &str, mode: Mode) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let upstream: hyper::Uri = upstream.parse().unwrap();
        let log = Arc::new(Log::default());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let client: Client<HttpConnector, Incoming> =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
        let served = log.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, log) = (client.clone(), upstream.clone(), served.clone());
                let service = hyper::service::service_fn(move |req| {
                    answer(req, client.clone(), upstream.clone(), mode, log.clone())
                });
                tokio::spawn(async move {
                    // Dropped connections and broken bodies are what this proxy is for.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy { addr, log, _runtime: runtime }
    }

    fn faults(&self) -> BTreeMap<Fault, u64> {
        self.log.faults.lock().unwrap().clone()
    }
}

/// The fault for request `n`, if it gets one: every third request, the kinds in turn (a kind
/// that does not fit the request, such as a broken body for an upload, becomes a drop).
fn fault_for(n: u64, req: &Request<Incoming>) -> Option<Fault> {
    if n % 3 != 2 {
        return None;
    }
    let reads = req.method() == hyper::Method::GET;
    let ranged = req.headers().contains_key(hyper::header::RANGE);
    Some(match (n / 3) % 8 {
        0 | 4 => Fault::SlowDown,
        1 | 5 => Fault::Dropped,
        7 => Fault::Stall,
        3 if ranged => Fault::CutRange,
        _ if reads => Fault::BrokenBody,
        _ => Fault::Dropped,
    })
}

async fn answer(
    mut req: Request<Incoming>,
    client: Client<HttpConnector, Incoming>,
    upstream: hyper::Uri,
    mode: Mode,
    log: Arc<Log>,
) -> Result<Response<Body>, std::io::Error> {
    let n = log.requests.fetch_add(1, Ordering::Relaxed);
    let fault = if mode == Mode::Flaky { fault_for(n, &req) } else { None };
    if let Some(f) = fault {
        *log.faults.lock().unwrap().entry(f).or_default() += 1;
    }
    match fault {
        Some(Fault::SlowDown) => {
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            return Ok(Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("content-type", "application/xml")
                .body(Full::new(Bytes::from(xml)).map_err(|e| match e {}).boxed())
                .unwrap());
        }
        Some(Fault::Dropped) => return Err(std::io::Error::other("dropped by the fault proxy")),
        Some(Fault::Stall) if req.method() != hyper::Method::GET => std::future::pending::<()>().await,
        _ => {}
    }
    let ranged = req.headers().contains_key(hyper::header::RANGE);
    // The Host header is kept as the client signed it; only where the request goes changes.
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *req.uri_mut() = format!("http://{}{path}", upstream.authority().unwrap()).parse().unwrap();
    let resp = client.request(req).await.map_err(std::io::Error::other)?;
    let (mut head, body) = resp.into_parts();
    if mode == Mode::IgnoresRange && ranged {
        head.status = StatusCode::OK;
        head.headers.remove(hyper::header::CONTENT_RANGE);
    }
    let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    let half = bytes.slice(..bytes.len() / 2);
    let body = match fault {
        Some(Fault::BrokenBody) if bytes.len() > 1 => {
            let frames = [Ok(Frame::data(half)), Err(std::io::Error::other("connection broken by the fault proxy"))];
            StreamBody::new(futures::stream::iter(frames)).boxed()
        }
        Some(Fault::Stall) => {
            let frames =
                futures::StreamExt::chain(futures::stream::iter([Ok(Frame::data(half))]), futures::stream::pending());
            StreamBody::new(frames).boxed()
        }
        Some(Fault::CutRange) if bytes.len() > 1 => {
            head.headers.insert(hyper::header::CONTENT_LENGTH, half.len().into());
            Full::new(half).map_err(|e| match e {}).boxed()
        }
        _ => Full::new(bytes).map_err(|e| match e {}).boxed(),
    };
    Ok(Response::from_parts(head, body))
}

fn haypack(server: &TestServer, endpoint: &str, cache: &Path) -> Command {
    let mut cmd = Command::cargo_bin("haypack").unwrap();
    cmd.envs(server.env())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_PROFILE")
        .env_remove("HAYPACK_LOG")
        .env("XDG_CACHE_HOME", cache)
        // A stalled answer is given up on after 3 s (and asked for again).
        .args(["--quiet", "--s3-part-size", "5M", "--s3-timeout", "3s"]);
    cmd
}

/// Every file under `dir`, by its path relative to it.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_str().unwrap().to_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Verified straight against Garage (not through the proxy), and extracted: the records.
fn committed(direct: impl Fn() -> Command, url: &str) -> BTreeMap<String, Vec<u8>> {
    direct().args(["verify", url]).assert().success();
    let out = tempfile::tempdir().unwrap();
    direct().args(["extract", url]).arg(out.path()).assert().success();
    files(out.path())
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[test]
fn every_writer_and_reader_comes_through_a_flaky_proxy_with_the_same_bytes() {
    let garage = TestServer::get("garage");
    let proxy = Proxy::start(&garage.endpoint, Mode::Flaky);
    let through = format!("http://{}", proxy.addr);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let flaky = || haypack(&garage, &through, &cache);
    let direct = || haypack(&garage, &garage.endpoint, &cache);
    let src = common::sample_with_big(tmp.path(), 12 << 20);
    let mut expected = files(&src);

    // Pack straight to S3.
    let url = garage.fresh_url("flaky-pack");
    flaky().arg("pack").arg(&src).arg(&url).assert().success();
    assert_eq!(committed(direct, &url), expected, "pack through the proxy");

    // Read: get (cold, no cache), then extract.
    let keys = expected.keys().filter(|k| k.starts_with("notes/") || k.starts_with("big") || k.ends_with("0.json"));
    for key in keys {
        flaky().args(["--no-cache", "get", &url, key]).assert().success().stdout(predicate::eq(expected[key].clone()));
    }
    let out = tmp.path().join("extracted");
    flaky().args(["extract", &url]).arg(&out).assert().success();
    assert_eq!(files(&out), expected, "extract through the proxy");

    // Change: rm, then compact what the rm left.
    let doomed: Vec<String> = expected.keys().filter(|k| k.starts_with("products/0")).cloned().collect();
    flaky().args(["rm", &url]).args(&doomed).assert().success();
    for k in &doomed {
        expected.remove(k);
    }
    assert_eq!(committed(direct, &url), expected, "rm through the proxy");
    flaky().args(["compact", "--min-garbage", "0.01", &url]).assert().success();
    assert_eq!(committed(direct, &url), expected, "compact through the proxy");

    // Push a local archive up.
    let local = tmp.path().join("local");
    direct().arg("pack").arg(&src).arg(&local).assert().success();
    let pushed = garage.fresh_url("flaky-push");
    flaky().arg("push").arg(&local).arg(&pushed).assert().success();
    assert_eq!(committed(direct, &pushed), files(&src), "push through the proxy");

    // The proxy did its job: every kind of fault, many times.
    let faults = proxy.faults();
    for kind in [Fault::SlowDown, Fault::Dropped, Fault::BrokenBody, Fault::CutRange, Fault::Stall] {
        assert!(faults.get(&kind).copied().unwrap_or(0) >= 2, "too few {kind:?} faults: {faults:?}");
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[test]
fn a_proxy_that_ignores_range_makes_reads_fail_with_a_named_error_and_write_nothing() {
    let garage = TestServer::get("garage");
    let proxy = Proxy::start(&garage.endpoint, Mode::IgnoresRange);
    let through = format!("http://{}", proxy.addr);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let src = common::sample_with_big(tmp.path(), 12 << 20);
    let url = garage.fresh_url("ignores-range");
    haypack(&garage, &garage.endpoint, &cache).arg("pack").arg(&src).arg(&url).assert().success();

    let ignored = "the server sent the whole object instead";
    let out = tmp.path().join("record");
    haypack(&garage, &through, &cache)
        .args(["--no-cache", "get", &url, "README.txt", "-o"])
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(ignored));
    assert!(!out.exists(), "no file for a read that failed");
    let dir = tmp.path().join("extracted");
    haypack(&garage, &through, &cache)
        .args(["--no-cache", "extract", &url])
        .arg(&dir)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(ignored));
    assert!(!dir.exists() || files(&dir).is_empty(), "extract wrote nothing it could not check");
}

//! The S3 store against a server that does not answer as S3 does: a tiny HTTP server on
//! 127.0.0.1 that sends the whole object for a range, another range, a body longer or shorter than
//! asked, no Content-Length, or no upload id. Each answer must be refused with its named error,
//! before its body is kept: the whole "object" here claims 4 GiB, and the test counts what the
//! server managed to send before the store hung up.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use haypack_s3::{MIN_PART_SIZE, S3Options, S3Store};
use haypack_store::{AnswerProblem, Error, Store};
use http_body_util::combinators::UnsyncBoxBody as BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};

/// What the server claims a whole object is: far more than a test could buffer.
const HUGE: u64 = 4 << 30;
const CHUNK: usize = 64 << 10;

#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Answers a range with 200 and the whole (huge) object.
    WholeObject,
    /// Answers with the range one byte further on.
    OtherRange,
    /// The range asked for, but a huge Content-Length.
    LongBody,
    /// The range asked for, but the connection breaks halfway through the body.
    ShortBody,
    /// The range asked for, chunked, without a Content-Length.
    NoLength,
    /// CreateMultipartUpload without an UploadId.
    NoUploadId,
}

/// What the server did, for the test to check.
#[derive(Debug, Default)]
struct Seen {
    /// Body bytes the server produced for the connection to send.
    sent: AtomicU64,
    /// Requests that carried a part (UploadPart) or a whole object (PutObject).
    uploads: AtomicU64,
}

type Body = BoxBody<Bytes, std::io::Error>;

/// A body of `len` zero bytes that counts what is taken from it, and breaks off after `cut`.
fn zeros(len: u64, cut: Option<u64>, seen: Arc<Seen>) -> Body {
    let stream = futures::stream::unfold(0u64, move |at| {
        let seen = seen.clone();
        async move {
            if at >= len {
                return None;
            }
            if cut.is_some_and(|c| at >= c) {
                return Some((Err(std::io::Error::other("the server broke off")), len));
            }
            let n = (len - at).min(CHUNK as u64).min(cut.map_or(u64::MAX, |c| c - at));
            seen.sent.fetch_add(n, Ordering::Relaxed);
            Some((Ok(Frame::data(Bytes::from(vec![0u8; n as usize]))), at + n))
        }
    });
    BoxBody::new(StreamBody::new(stream.boxed()))
}

fn answer(how: Misbehaviour, req: &Request<Incoming>, seen: &Arc<Seen>) -> Response<Body> {
    let seen = seen.clone();
    if req.method() == hyper::Method::PUT {
        seen.uploads.fetch_add(1, Ordering::Relaxed);
    }
    if req.method() == hyper::Method::POST {
        // CreateMultipartUpload: the result, less its UploadId.
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult>\
                   <Bucket>bucket</Bucket><Key>a/packs/x</Key></InitiateMultipartUploadResult>";
        let body = BoxBody::new(http_body_util::Full::new(Bytes::from(xml)).map_err(|e: Infallible| match e {}));
        return Response::new(body);
    }
    let range = req.headers().get("range").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("bytes="));
    let (start, last) = range
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .unwrap_or((0, HUGE - 1));
    let len = last - start + 1;
    let partial = |first: u64, body_len: u64, content_length: Option<u64>, body: Body| {
        let mut r = Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header("content-range", format!("bytes {first}-{}/{HUGE}", first + body_len - 1))
            .header("etag", "\"v1\"");
        if let Some(n) = content_length {
            r = r.header("content-length", n);
        }
        r.body(body).expect("a valid response")
    };
    match how {
        Misbehaviour::WholeObject => Response::builder()
            .header("content-length", HUGE)
            .header("etag", "\"v1\"")
            .body(zeros(HUGE, None, seen))
            .expect("a valid response"),
        Misbehaviour::OtherRange => partial(start + 1, len, Some(len), zeros(len, None, seen)),
        Misbehaviour::LongBody => partial(start, len, Some(HUGE), zeros(HUGE, None, seen)),
        Misbehaviour::ShortBody => partial(start, len, Some(len), zeros(len, Some(len / 2), seen)),
        Misbehaviour::NoLength | Misbehaviour::NoUploadId => partial(start, len, None, zeros(len, None, seen)),
    }
}

/// Starts a server that misbehaves `how` on a free port; returns its address.
async fn server(how: Misbehaviour, seen: Arc<Seen>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = answer(how, &req, &seen);
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                // A client hanging up mid-body is what these tests expect.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn store(how: Misbehaviour) -> (S3Store, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let addr = server(how, seen.clone()).await;
    let opts = S3Options {
        endpoint_url: Some(format!("http://{addr}")),
        region: Some("us-east-1".into()),
        credentials: Some(("haypack-test".into(), "haypack-test-secret".into())),
        part_size: MIN_PART_SIZE,
        ..S3Options::default()
    };
    (S3Store::connect("s3://bucket/a", opts).await.expect("a store"), seen)
}

/// Reads 1,000 bytes at offset 100 from a server that misbehaves `how`, and returns the problem
/// it was refused with.
async fn refused_range(how: Misbehaviour) -> (AnswerProblem, Arc<Seen>) {
    let (store, seen) = store(how).await;
    match store.get_range("packs/x", 100..1100).await {
        Err(Error::BadAnswer { problem, op: "reading", name, .. }) => {
            assert_eq!(name, "packs/x");
            (problem, seen)
        }
        other => panic!("{how:?}: expected a refused answer, got {other:?}"),
    }
}

/// The store hung up instead of reading on: at most what sits in socket buffers was produced.
fn hung_up(seen: &Seen) {
    let sent = seen.sent.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "the server got to send {sent} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_object_for_a_range_is_refused_unread() {
    let (problem, seen) = refused_range(Misbehaviour::WholeObject).await;
    assert_eq!(problem, AnswerProblem::RangeIgnored { start: 100, end: 1100 });
    hung_up(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_range_is_refused() {
    let (problem, _) = refused_range(Misbehaviour::OtherRange).await;
    let answered = format!("bytes 101-1100/{HUGE}");
    assert_eq!(problem, AnswerProblem::WrongRange { start: 100, end: 1100, answered });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_longer_than_asked_is_refused_unread() {
    let (problem, seen) = refused_range(Misbehaviour::LongBody).await;
    assert_eq!(problem, AnswerProblem::BodyTooLong { expected: 1000 });
    hung_up(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_off_is_refused() {
    // The server breaks the connection after half the body. Whether the client has the
    // answer's head by then is up to the two HTTP stacks' buffering: either way the read fails,
    // as a short body or as a connection closed before the answer was complete.
    let (store, _) = store(Misbehaviour::ShortBody).await;
    match store.get_range("packs/x", 100..1100).await {
        Err(Error::BadAnswer { problem: AnswerProblem::BodyTooShort { expected: 1000, got, .. }, .. }) => {
            assert!(got < 1000);
        }
        Err(Error::Remote { detail, .. }) => assert!(detail.contains("closed"), "{detail}"),
        other => panic!("expected a refused answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_a_length_is_refused_unread() {
    let (problem, _) = refused_range(Misbehaviour::NoLength).await;
    assert_eq!(problem, AnswerProblem::NoLength);
    // A whole-object read needs the length too.
    let (store, _) = store(Misbehaviour::NoLength).await;
    let err = store.get("manifest.json").await.expect_err("no length");
    assert!(matches!(err, Error::BadAnswer { problem: AnswerProblem::NoLength, .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_without_an_upload_id_sends_no_part() {
    let (store, seen) = store(Misbehaviour::NoUploadId).await;
    let written = tokio::task::spawn_blocking(move || {
        let mut w = store.create("packs/x")?;
        // One whole part: the writer starts the multipart upload before sending it.
        w.write_all(&vec![7u8; MIN_PART_SIZE]).map_err(|e| match e.into_inner().map(|e| e.downcast::<Error>()) {
            Some(Ok(e)) => *e,
            other => panic!("expected a store error, got {other:?}"),
        })?;
        w.finish()
    })
    .await
    .expect("the writer thread");
    assert!(matches!(written, Err(Error::BadAnswer { problem: AnswerProblem::NoUploadId, .. })), "{written:?}");
    assert_eq!(seen.uploads.load(Ordering::Relaxed), 0);
}

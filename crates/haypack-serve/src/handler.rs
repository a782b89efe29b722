//! One request, one response: routing, records with their validators and ranges, listings, the
//! health probe, and one access-log line per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use haypack_format::Budget;
use haypack_read::{Archive, Record, Want};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    LAST_MODIFIED, RANGE, RETRY_AFTER, VARY,
};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};

use crate::State;
use crate::request::{Ranged, accepts, key_of, not_modified, query_pairs, range};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body: bytes in memory, or a record streamed in pieces.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Answers one request and logs it.
pub async fn handle(state: Arc<State>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    // The generation this request is served from, to its last byte, whatever reloads happen.
    let archive = state.current.load_full();
    let (parts, _) = req.into_parts();
    let timeout = state.options.request_timeout;
    let response = match tokio::time::timeout(timeout, respond(&state, archive.clone(), &parts)).await {
        Ok(r) => r,
        Err(_) => problem(StatusCode::GATEWAY_TIMEOUT, format!("no answer within {timeout:?}; try again")),
    };
    tracing::info!(
        target: "haypack_serve::access",
        %peer,
        method = %parts.method,
        path = parts.uri.path(),
        status = response.status().as_u16(),
        len = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-"),
        ms = started.elapsed().as_secs_f64() * 1e3,
        generation = archive.manifest().generation,
    );
    Ok(response)
}

async fn respond(state: &State, archive: Arc<Archive>, req: &Parts) -> Response<Body> {
    let head = match req.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = problem(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served".into());
            r.headers_mut().insert(ALLOW, "GET, HEAD".parse().expect("a valid header value"));
            return r;
        }
    };
    let path = req.uri.path();
    let response = match path {
        "/healthz" => healthz(&archive),
        "/" => list(state, &archive, req.uri.query().unwrap_or("")).await,
        _ => match key_of(path) {
            Ok(key) => record(state, archive, req, &key, head).await,
            Err(why) => problem(StatusCode::BAD_REQUEST, format!("{why}; a URL path names one record by its key")),
        },
    };
    if head {
        // Headers as for GET (Content-Length included), no body.
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, empty());
    }
    response
}

async fn record(state: &State, archive: Arc<Archive>, req: &Parts, key: &str, head: bool) -> Response<Body> {
    let want = if head { Want::Header } else { Want::Content };
    let rec = match read_record(state, archive, key, want).await {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let (h, entry) = (rec.header(), rec.entry());
    // The CRC-32C and length name the content; an encoded form of it is another representation
    // and needs a tag of its own (RFC 9110 §8.8.3).
    let etag = format!("\"{:08x}-{:x}\"", h.crc32c, h.raw_len);
    let coding = rec.content_encoding();
    let etag_coded = coding.map(|c| format!("\"{:08x}-{:x}-{c}\"", h.crc32c, h.raw_len));
    let modified = entry.mtime.to_system_time();
    let last_modified = modified.map(httpdate::fmt_http_date);
    // A range is of the content, so it is served decoded.
    let send_coded = coding.filter(|c| accepts(&req.headers, c) && !req.headers.contains_key(RANGE));

    let mut b = Response::builder()
        .header(ETAG, if send_coded.is_some() { etag_coded.as_deref().unwrap_or(&etag) } else { &etag })
        .header(CACHE_CONTROL, &state.options.cache_control)
        .header(ACCEPT_RANGES, "bytes");
    if let Some(lm) = &last_modified {
        b = b.header(LAST_MODIFIED, lm);
    }
    if coding.is_some() {
        b = b.header(VARY, "accept-encoding");
    }
    let tags: Vec<&str> = [Some(etag.as_str()), etag_coded.as_deref()].into_iter().flatten().collect();
    if not_modified(&req.headers, &tags, modified) {
        return finish(b.status(StatusCode::NOT_MODIFIED), empty());
    }
    b = b.header(CONTENT_TYPE, entry.content_type.as_deref().unwrap_or("application/octet-stream"));
    if let Some(coding) = send_coded {
        b = b.header(CONTENT_ENCODING, coding);
        // The encoded length, without reading the record: the whole record for gzip, the
        // content frame for zstd.
        let len = if coding == "gzip" { entry.len } else { h.stored_len };
        if head {
            return finish(b.header(CONTENT_LENGTH, len), empty());
        }
        if !Budget::whole(entry.len, h.raw_len) {
            // Checking it all first would hold the answer back for seconds (a few MiB of gzip
            // can decode to GiBs): the stored bytes go out as they are checked, a step at a time
            // on the blocking pool, the last only once all were, and a failed check aborts.
            return match rec.into_encoded_stream() {
                Ok(Some(pieces)) => finish(b.header(CONTENT_LENGTH, len), aborting(pieces)),
                Ok(None) => problem(StatusCode::INTERNAL_SERVER_ERROR, "the record was not read whole".into()),
                Err(e) => read_failed(e),
            };
        }
        // Checked before the first byte goes out, on a blocking thread for the milliseconds
        // that takes.
        return match off_worker(move || rec.encoded()).await {
            Ok(Ok(Some(encoded))) => finish(b.header(CONTENT_LENGTH, encoded.len()), full(encoded)),
            Ok(Ok(None)) => problem(StatusCode::INTERNAL_SERVER_ERROR, "the record was not read whole".into()),
            Ok(Err(e)) => read_failed(e),
            Err(response) => response,
        };
    }
    let total = h.raw_len;
    // HEAD ignores Range: it describes the whole content.
    let ranged = if head { Ranged::Full } else { range(&req.headers, total, &etag, last_modified.as_deref()) };
    let (start, end) = match ranged {
        Ranged::Full => (0, total),
        Ranged::Part(start, end) => {
            b = b
                .status(StatusCode::PARTIAL_CONTENT)
                .header(CONTENT_RANGE, format!("bytes {start}-{}/{total}", end - 1));
            (start, end)
        }
        Ranged::Unsatisfiable => {
            let b = b.status(StatusCode::RANGE_NOT_SATISFIABLE).header(CONTENT_RANGE, format!("bytes */{total}"));
            return finish(b.header(CONTENT_LENGTH, 0), empty());
        }
    };
    b = b.header(CONTENT_LENGTH, end - start);
    if head {
        return finish(b, empty());
    }
    // A record read whole may still decode to far more than it stores: that one streams too.
    if !rec.is_whole() || !Budget::whole(entry.len, total) {
        return finish(b, streamed(rec, start, end, state.upstream.clone()));
    }
    let content = if total > OFF_WORKER_DECODE {
        // Decoding MiBs takes milliseconds: on a blocking thread, so that small requests on this
        // worker do not wait behind it. The record is whole: `content` reads nothing more.
        let runtime = tokio::runtime::Handle::current();
        match off_worker(move || runtime.block_on(rec.content())).await {
            Ok(r) => r,
            Err(response) => return response,
        }
    } else {
        rec.content().await
    };
    match content {
        Ok(content) => finish(b, full(Bytes::from(content).slice(start as usize..end as usize))),
        Err(e) => read_failed(e),
    }
}

/// Contents larger than this are decoded off the async worker threads.
const OFF_WORKER_DECODE: u64 = 1 << 20;

/// Looks `key` up and reads its record (see [`Archive::record`]), holding an upstream read
/// slot for the reads only: never while a client takes the response. A generation whose objects
/// were replaced or removed under it (a repack, a `gc` after a compaction) gets one reload and
/// one more try, since what is current now may have the record. The error is the response.
async fn read_record(
    state: &State,
    archive: Arc<Archive>,
    key: &str,
    want: Want,
) -> Result<Record, Box<Response<Body>>> {
    let Ok(_permit) = state.upstream.acquire().await else {
        return Err(Box::new(problem(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down".into())));
    };
    let e = match archive.record(key, want).await {
        Ok(r) => return Ok(r),
        Err(
            e @ (haypack_read::Error::Changed { .. }
            | haypack_read::Error::Store(haypack_store::Error::NotFound { .. })),
        ) => e,
        Err(e) => return Err(Box::new(read_failed(e))),
    };
    if let Err(reload) = state.reload(Some(&archive)).await {
        tracing::warn!("{e}; reloading failed too: {reload}");
        return Err(Box::new(read_failed(e)));
    }
    let current = state.current.load_full();
    if Arc::ptr_eq(&current, &archive) {
        return Err(Box::new(read_failed(e)));
    }
    current.record(key, want).await.map_err(|e| Box::new(read_failed(e)))
}

/// Runs `f` on the blocking pool; a failure to run it is a 500.
async fn off_worker<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response<Body>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding the record failed: {e}")))
}

/// A record too large to hold, decoded piece by piece and cut to `start..end`. Each read of the
/// store takes an upstream slot for as long as it runs, not for the body's life: a client that
/// stops reading holds one chunk and no slot (and the write timeout ends it).
fn streamed(rec: Record, start: u64, end: u64, upstream: Arc<tokio::sync::Semaphore>) -> Body {
    let total = rec.header().raw_len;
    let pieces = Box::pin(rec.into_stream(Some(upstream)));
    let frames = futures::stream::unfold((pieces, 0u64), move |(mut pieces, mut at)| async move {
        loop {
            // A range that stops short of the end stops reading there: its bytes passed the
            // framing checks but not the CRC, which covers the whole content. A body that runs to
            // the end polls once more, for the check (a failure there aborts the response).
            if at >= end && end < total {
                return None;
            }
            match pieces.next().await? {
                Err(e) => {
                    tracing::error!("streaming a record failed, aborting the response: {e}");
                    return Some((Err(BoxError::from(e)), (pieces, u64::MAX)));
                }
                Ok(piece) => {
                    let (from, to) = (at, at + piece.len() as u64);
                    at = to;
                    let (a, b) = (start.max(from), end.min(to));
                    if a < b {
                        let piece = piece.slice((a - from) as usize..(b - from) as usize);
                        return Some((Ok(Frame::data(piece)), (pieces, at)));
                    }
                }
            }
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

/// A body of checked pieces that aborts the response at the first failed check, so the client
/// sees a truncated body, never a complete wrong one.
fn aborting(pieces: impl futures::Stream<Item = haypack_read::Result<Bytes>> + Send + 'static) -> Body {
    let frames = pieces.map(|piece| {
        piece.map(Frame::data).map_err(|e| {
            tracing::error!("streaming a record failed, aborting the response: {e}");
            BoxError::from(e)
        })
    });
    StreamBody::new(frames).boxed_unsync()
}

async fn list(state: &State, archive: &Archive, query: &str) -> Response<Body> {
    let pairs = match query_pairs(query) {
        Ok(p) => p,
        Err(why) => return problem(StatusCode::BAD_REQUEST, why.into()),
    };
    let max = state.options.max_page.max(1);
    let (mut prefix, mut after, mut limit) = (String::new(), None, max);
    for (name, value) in pairs {
        match name.as_str() {
            "prefix" => prefix = value,
            "after" => after = Some(value),
            "limit" => match value.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(max),
                _ => return problem(StatusCode::BAD_REQUEST, format!("limit must be a number from 1 to {max}")),
            },
            _ => {}
        }
    }
    let Ok(_permit) = state.upstream.acquire().await else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down".into());
    };
    let page = match archive.list_page(&prefix, after.as_deref(), limit).await {
        Ok(p) => p,
        Err(e) => return read_failed(e),
    };
    let keys: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "key": e.key,
                "size": e.raw_len,
                "mtime": e.mtime.secs,
                "content_type": e.content_type,
            })
        })
        .collect();
    let next = page.more.then(|| page.entries.last().map(|e| e.key.clone())).flatten();
    let body = serde_json::json!({
        "generation": archive.manifest().generation,
        "prefix": prefix,
        "keys": keys,
        "next": next,
    });
    json(body, "no-cache")
}

fn healthz(archive: &Archive) -> Response<Body> {
    let m = archive.manifest();
    json(serde_json::json!({"status": "ok", "generation": m.generation, "records": m.records}), "no-store")
}

fn json(value: serde_json::Value, cache_control: &str) -> Response<Body> {
    let body = Bytes::from(value.to_string());
    let b = Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, cache_control)
        .header(CONTENT_LENGTH, body.len());
    finish(b, full(body))
}

/// The status for a read that failed: the client's fault only when the key is not there.
fn read_failed(e: haypack_read::Error) -> Response<Body> {
    use haypack_read::Error as E;
    match e {
        E::NotFound { key, .. } => problem(StatusCode::NOT_FOUND, format!("no record {key:?}")),
        E::Changed { .. } => {
            tracing::warn!("{e}");
            let mut r = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the archive changed under this generation; try again after the reload".into(),
            );
            r.headers_mut().insert(RETRY_AFTER, "1".parse().expect("a valid header value"));
            r
        }
        E::Store(_) => {
            tracing::warn!("{e}");
            problem(StatusCode::BAD_GATEWAY, "the archive's store failed; try again".into())
        }
        e => {
            tracing::error!("{e}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "the record could not be read; the server log says why".into())
        }
    }
}

fn problem(status: StatusCode, message: String) -> Response<Body> {
    let body = Bytes::from(message + "\n");
    let b = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .header(CONTENT_LENGTH, body.len());
    finish(b, full(body))
}

/// Builds the response; the builder's parts are all ours and valid, so failure is a bug worth
/// a 500 rather than a panic.
fn finish(b: hyper::http::response::Builder, body: Body) -> Response<Body> {
    b.body(body).unwrap_or_else(|e| {
        tracing::error!("building a response: {e}");
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

fn empty() -> Body {
    full(Bytes::new())
}

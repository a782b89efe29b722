//! The S3 store: haypack archives in any S3-compatible bucket, addressed as `s3://bucket/prefix`.
//!
//! Credentials and region come from the standard AWS chain (environment, profile, instance role).
//! A custom endpoint (`AWS_ENDPOINT_URL` or [`S3Options::endpoint_url`]) switches to path-style
//! addressing, as S3-compatible servers such as Garage and MinIO expect. The SDK retries 5xx,
//! throttling, timeouts and connection resets with exponential backoff and jitter; a refusal
//! (wrong credentials, a missing bucket) is not retried and says what to check.
//!
//! This is the only crate that knows about S3 or HTTP.

mod location;
#[cfg(feature = "testing")]
pub mod testing;
mod writer;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use bytes::Bytes;
use haypack_store::{
    AnswerProblem, Error, ObjectMeta, ObjectWriter, PutMode, Result, Store, changed, check_name, check_put,
};
use md5::Digest;

pub use crate::location::{is_remote, store_at};

/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The room a whole-object read starts with; it grows as the body comes, never by what the
/// answer announces.
const WHOLE_CAPACITY: usize = 8 << 20;
/// How many times a read whose body broke off is made in all (see `S3Store::read_again`).
const BODY_ATTEMPTS: u32 = 3;

/// How to reach and use an S3 endpoint.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// A custom endpoint, such as `http://127.0.0.1:3900`; `None` uses `AWS_ENDPOINT_URL` or AWS.
    pub endpoint_url: Option<String>,
    /// The region; `None` uses the AWS chain, then `us-east-1`.
    pub region: Option<String>,
    /// An access key id and secret; `None` uses the AWS chain (environment, profile, role).
    pub credentials: Option<(String, String)>,
    /// Multipart part size in bytes (at least 5 MiB).
    pub part_size: usize,
    /// Parts uploaded at once per object being written.
    pub concurrency: usize,
    /// Copy byte ranges between objects inside the store (UploadPartCopy) where a writer can;
    /// off, such bytes are downloaded and uploaded again (for stores without UploadPartCopy).
    pub server_side_copy: bool,
    /// How long to wait for an answer to start, and then for each next piece of its body: a
    /// server silent for longer is given up on, and the request made again.
    pub read_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint_url: None,
            region: None,
            credentials: None,
            part_size: 8 << 20,
            concurrency: 8,
            server_side_copy: true,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A store in an S3 bucket, under a prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
    url: String,
    opts: S3Options,
    /// Part buffers whose upload finished, for the next parts: allocating a fresh 8 MiB buffer
    /// per part leaves the allocator holding freed ones in every thread's arena (a push peaked
    /// at 2.5× the bytes in flight that way).
    buffers: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Inner {
    /// An empty buffer of at least `capacity` (a part's size).
    fn buffer(&self, capacity: usize) -> Vec<u8> {
        let reused = self.buffers.lock().expect("buffer pool lock").pop();
        reused.filter(|b| b.capacity() >= capacity).unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Takes back a part's buffer once nothing else holds it.
    fn recycle(&self, bytes: bytes::Bytes) {
        let Ok(buf) = bytes.try_into_mut() else { return };
        let mut buf = Vec::from(buf);
        buf.clear();
        let mut pool = self.buffers.lock().expect("buffer pool lock");
        // Enough for every part in flight of a couple of objects at once.
        if pool.len() < 2 * self.opts.concurrency.max(1) + 2 {
            pool.push(buf);
        }
    }
}

/// An unfinished multipart upload: an object being written, or left behind by an interrupted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The object name (relative to the store's prefix).
    pub name: String,
    /// The upload id.
    pub upload_id: String,
    /// When it was started, as the server says (RFC 3339).
    pub initiated: String,
}

/// Splits `s3://bucket/prefix` into the bucket and a prefix that is empty or ends with `/`.
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let invalid = |detail: &str| Error::InvalidLocation { location: url.to_owned(), detail: detail.to_owned() };
    let rest = url.strip_prefix("s3://").ok_or_else(|| invalid("an S3 archive is written s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(invalid("the bucket name must be 3 to 63 lowercase letters, digits, '-' or '.'"));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        check_name(prefix).map_err(|e| invalid(&e.to_string()))?;
    }
    let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    Ok((bucket.to_owned(), prefix))
}

impl S3Store {
    /// Connects to the archive at `url` (`s3://bucket/prefix`). No request is made yet.
    pub async fn connect(url: &str, opts: S3Options) -> Result<Self> {
        let (bucket, prefix) = parse_url(url)?;
        if opts.part_size < MIN_PART_SIZE {
            return Err(Error::InvalidLocation {
                location: url.to_owned(),
                detail: format!("part size {} is under the S3 minimum of 5 MiB", opts.part_size),
            });
        }
        let mut loader = aws_config::from_env();
        if let Some(endpoint) = &opts.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &opts.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = &opts.credentials {
            loader =
                loader.credentials_provider(aws_sdk_s3::config::Credentials::new(id, secret, None, None, "haypack"));
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            // S3-compatible servers are addressed by path, not by virtual host.
            .force_path_style(sdk.endpoint_url().is_some())
            // Only send and check checksums where S3 requires them: some S3-compatible servers
            // reject the SDK's default trailing checksums. Integrity comes from Content-MD5 on
            // every part and from haypack's own CRCs.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(opts.read_timeout)
                    .build(),
            );
        if sdk.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        let client = Client::from_conf(conf.build());
        Ok(S3Store {
            inner: Arc::new(Inner {
                client,
                bucket,
                prefix,
                url: url.trim_end_matches('/').to_owned(),
                opts,
                buffers: std::sync::Mutex::default(),
            }),
        })
    }

    fn key(&self, name: &str) -> Result<String> {
        check_name(name)?;
        Ok(format!("{}{name}", self.inner.prefix))
    }

    /// Multipart uploads under this store's prefix that were started and never completed or
    /// aborted: each one is billed until it is aborted.
    pub async fn pending_uploads(&self) -> Result<Vec<PendingUpload>> {
        let i = &self.inner;
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let resp = i
                .client
                .list_multipart_uploads()
                .bucket(&i.bucket)
                .prefix(&i.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.remote("listing uploads in", "", e))?;
            for u in resp.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else { continue };
                out.push(PendingUpload {
                    name: key.strip_prefix(&i.prefix).unwrap_or(key).to_owned(),
                    upload_id: id.to_owned(),
                    initiated: u.initiated().map(|t| t.to_string()).unwrap_or_default(),
                });
            }
            if resp.is_truncated() != Some(true) {
                break;
            }
            key_marker = resp.next_key_marker().map(str::to_owned);
            id_marker = resp.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Aborts a pending multipart upload, freeing its parts.
    pub async fn abort_upload(&self, upload: &PendingUpload) -> Result<()> {
        let key = self.key(&upload.name)?;
        self.inner
            .client
            .abort_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(|e| self.remote("aborting the upload of", &upload.name, e))?;
        Ok(())
    }

    /// Turns an SDK error into a store error that says what happened and what to check.
    fn remote<E>(&self, op: &'static str, name: &str, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let store = self.describe();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let detail = match (status, code.as_deref()) {
            (_, Some("NoSuchBucket")) => format!("bucket {} does not exist", self.inner.bucket),
            (Some(404), _) | (_, Some("NoSuchKey" | "NotFound")) => {
                return Error::NotFound { store, name: name.to_owned() };
            }
            (Some(412), _) | (_, Some("PreconditionFailed")) => {
                return Error::Conflict {
                    store,
                    name: name.to_owned(),
                    detail: "changed or was created by another writer".into(),
                };
            }
            (Some(403), c) | (_, c @ Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")) => format!(
                "access denied ({}): check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and the bucket's permissions",
                c.unwrap_or("403")
            ),
            _ => match &err {
                SdkError::DispatchFailure(_) => format!(
                    "cannot reach the S3 endpoint ({}); is the server up and AWS_ENDPOINT_URL right?",
                    causes(&err)
                ),
                SdkError::TimeoutError(_) => "the request timed out after retries".to_owned(),
                _ => causes(&err),
            },
        };
        Error::Remote { store, op, name: name.to_owned(), detail }
    }

    fn bad_answer(&self, op: &'static str, name: &str, problem: AnswerProblem) -> Error {
        Error::BadAnswer { store: self.describe(), op, name: name.to_owned(), problem }
    }

    /// The length a response announces: refused if it does not say (a body of unknown length
    /// would be read until it ends, however long that is).
    fn announced(&self, op: &'static str, name: &str, content_length: Option<i64>) -> Result<u64> {
        content_length
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| self.bad_answer(op, name, AnswerProblem::NoLength))
    }

    /// Reads a response body of exactly `expected` bytes and no more: one that runs past is
    /// refused as soon as it does, one that ends early, breaks off or stalls (nothing for the
    /// read timeout) when it does. Starts with room for `capacity` bytes, the rest as they come:
    /// what is allocated follows what arrives, never a number from the answer.
    async fn body(&self, name: &str, mut body: ByteStream, expected: u64, capacity: usize) -> Result<Bytes> {
        let mut out = bytes::BytesMut::with_capacity(capacity);
        let short = |got: usize, cause: String| AnswerProblem::BodyTooShort { expected, got: got as u64, cause };
        let wait = self.inner.opts.read_timeout;
        loop {
            let Ok(next) = tokio::time::timeout(wait, body.try_next()).await else {
                let cause = format!(": nothing came for {} s", wait.as_secs_f64());
                return Err(self.bad_answer("reading", name, short(out.len(), cause)));
            };
            match next {
                Ok(Some(chunk)) => {
                    if (out.len() + chunk.len()) as u64 > expected {
                        return Err(self.bad_answer("reading", name, AnswerProblem::BodyTooLong { expected }));
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(None) if out.len() as u64 == expected => return Ok(out.freeze()),
                Ok(None) => return Err(self.bad_answer("reading", name, short(out.len(), String::new()))),
                Err(e) => return Err(self.bad_answer("reading", name, short(out.len(), format!(": {}", causes(&e))))),
            }
        }
    }

    /// One ranged GET, its answer checked before its body is read.
    async fn get_range_once(&self, name: &str, range: Range<u64>, version: Option<&str>) -> Result<(Bytes, String)> {
        if range.start >= range.end {
            if range.start > range.end {
                return Err(Error::OutOfRange {
                    store: self.describe(),
                    name: name.to_owned(),
                    start: range.start,
                    end: range.end,
                    size: 0,
                });
            }
            return Ok((Bytes::new(), version.unwrap_or_default().to_owned()));
        }
        let i = &self.inner;
        let out_of_range = |size| Error::OutOfRange {
            store: self.describe(),
            name: name.to_owned(),
            start: range.start,
            end: range.end,
            size,
        };
        let resp = i
            .client
            .get_object()
            .bucket(&i.bucket)
            .key(self.key(name)?)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(version.map(str::to_owned))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(416) => {
                return Err(out_of_range(self.head(name).await?.size));
            }
            Err(e) => return Err(self.remote("reading", name, e)),
        };
        // Servers that ignore If-Match still say which version they sent.
        let found = resp.e_tag().unwrap_or_default().to_owned();
        if let Some(pinned) = version.filter(|v| *v != found) {
            return Err(changed(self, name, pinned, &found));
        }
        // Everything about the answer is checked before its body is read: a server that ignores
        // the range sends the whole object, which may be gigabytes.
        let asked = range.end - range.start;
        let Some(answered) = resp.content_range() else {
            let (start, end) = (range.start, range.end);
            return Err(self.bad_answer("reading", name, AnswerProblem::RangeIgnored { start, end }));
        };
        // S3 answers a range reaching past the end with what there is (the object's real size
        // after the slash); any other start or end is not the range asked for.
        let (start, last, total) = parse_content_range(answered)
            .filter(|&(start, last, _)| start == range.start && last < range.end)
            .ok_or_else(|| {
                let answered = answered.to_owned();
                self.bad_answer(
                    "reading",
                    name,
                    AnswerProblem::WrongRange { start: range.start, end: range.end, answered },
                )
            })?;
        let expected = last - start + 1;
        let len = self.announced("reading", name, resp.content_length())?;
        if len > expected {
            return Err(self.bad_answer("reading", name, AnswerProblem::BodyTooLong { expected }));
        }
        if len < expected {
            let problem = AnswerProblem::BodyTooShort { expected, got: len, cause: " (by its Content-Length)".into() };
            return Err(self.bad_answer("reading", name, problem));
        }
        // `expected` is at most what was asked: the caller's number, not the server's.
        let bytes = self.body(name, resp.body, expected, expected as usize).await?;
        if expected < asked {
            return Err(out_of_range(total.unwrap_or(range.start + expected)));
        }
        Ok((bytes, found))
    }

    /// Runs a read again when its body broke off or ended early (a connection reset, a proxy
    /// that cut it): the SDK retries a request until its answer's head arrives, not while the
    /// body streams. Up to [`BODY_ATTEMPTS`] reads in all; any other error is returned at once.
    async fn read_again<T, F, Fut>(&self, read: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match read().await {
                Err(Error::BadAnswer { problem: AnswerProblem::BodyTooShort { .. }, name, .. })
                    if attempt < BODY_ATTEMPTS =>
                {
                    tracing::debug!("{name}: the body broke off (read {attempt} of {BODY_ATTEMPTS}); reading it again");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// Fails with `Conflict` unless the object's current state allows `mode`. Stores that honour
    /// conditional headers check again atomically; on those that ignore them (Garage) this check
    /// is all there is, and two writers racing inside it can both win.
    async fn precheck(&self, name: &str, mode: &PutMode) -> Result<()> {
        let current = match self.head(name).await {
            Ok(m) => Some(m.version),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        check_put(self, name, mode, current.as_deref())
    }
}

/// An error and its causes, each said once: "dispatch failure: io error: … Connection refused".
fn causes(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        source = cause.source();
    }
    out
}

/// A Content-Range header's `bytes START-LAST/TOTAL` (LAST inclusive; TOTAL `*` if unknown).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, last) = span.split_once('-')?;
    let (start, last) = (start.trim().parse().ok()?, last.trim().parse().ok()?);
    let total = if total.trim() == "*" { None } else { Some(total.trim().parse().ok()?) };
    (start <= last).then_some((start, last, total))
}

/// Content-MD5 of a body: S3 rejects the upload if the bytes it got differ.
fn content_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

#[async_trait::async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        self.inner.url.clone()
    }

    async fn get(&self, name: &str) -> Result<Bytes> {
        self.read_again(|| async {
            let i = &self.inner;
            let resp = i.client.get_object().bucket(&i.bucket).key(self.key(name)?).send().await;
            let resp = resp.map_err(|e| self.remote("reading", name, e))?;
            let len = self.announced("reading", name, resp.content_length())?;
            self.body(name, resp.body, len, usize::try_from(len).unwrap_or(usize::MAX).min(WHOLE_CAPACITY)).await
        })
        .await
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        Ok(self.get_range_pinned(name, range, None).await?.0)
    }

    async fn get_range_pinned(&self, name: &str, range: Range<u64>, version: Option<&str>) -> Result<(Bytes, String)> {
        self.read_again(|| self.get_range_once(name, range.clone(), version)).await
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        let i = &self.inner;
        let resp = i.client.head_object().bucket(&i.bucket).key(self.key(name)?).send().await;
        let resp = resp.map_err(|e| self.remote("inspecting", name, e))?;
        Ok(ObjectMeta {
            name: name.to_owned(),
            size: self.announced("inspecting", name, resp.content_length())?,
            version: resp.e_tag().unwrap_or_default().to_owned(),
            modified: resp.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
        })
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let key = self.key(name)?;
        if mode != PutMode::Overwrite {
            self.precheck(name, &mode).await?;
        }
        let i = &self.inner;
        let size = data.len() as u64;
        let mut req = i.client.put_object().bucket(&i.bucket).key(key).content_md5(content_md5(&data));
        req = match &mode {
            PutMode::Overwrite => req,
            PutMode::Create => req.if_none_match("*"),
            PutMode::Update(version) => req.if_match(version),
        };
        let resp = req.body(ByteStream::from(data)).send().await.map_err(|e| self.remote("writing", name, e))?;
        let version = resp.e_tag().unwrap_or_default().to_owned();
        Ok(ObjectMeta { name: name.to_owned(), size, version, modified: Some(std::time::SystemTime::now()) })
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(writer::S3Writer::new(self.clone(), name, self.key(name)?, false)?))
    }

    fn create_resumable(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(writer::S3Writer::new(self.clone(), name, self.key(name)?, true)?))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let i = &self.inner;
        let mut pages = i
            .client
            .list_objects_v2()
            .bucket(&i.bucket)
            .prefix(format!("{}{prefix}", i.prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.remote("listing", prefix, e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectMeta {
                    name: key.strip_prefix(&i.prefix).unwrap_or(key).to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    version: o.e_tag().unwrap_or_default().to_owned(),
                    modified: o.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn abort_uploads(&self, names: &[String]) -> Result<usize> {
        let mut aborted = 0;
        for upload in self.pending_uploads().await? {
            if names.contains(&upload.name) {
                self.abort_upload(&upload).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let i = &self.inner;
        let resp = i.client.delete_object().bucket(&i.bucket).key(self.key(name)?).send().await;
        match resp {
            Ok(_) => Ok(()),
            Err(e) => match self.remote("deleting", name, e) {
                Error::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_or_are_refused() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, Some(100))));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        for bad in ["bytes 9-0/100", "bytes=0-9/100", "bytes 0-/100", "bytes -9/100", "bytes 0-9", "items 0-9/1"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_parse_into_bucket_and_prefix() {
        assert_eq!(parse_url("s3://bucket").unwrap(), ("bucket".into(), String::new()));
        assert_eq!(parse_url("s3://bucket/").unwrap(), ("bucket".into(), String::new()));
        assert_eq!(parse_url("s3://my.bucket/a/b/").unwrap(), ("my.bucket".into(), "a/b/".into()));
        for bad in
            ["bucket/x", "s3://", "s3://ab", "s3://Bucket/x", "s3://b_b/x", "s3://bucket/a/../b", "s3://bucket//x"]
        {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}

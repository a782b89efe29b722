//! Streaming writes as multipart uploads: parts upload concurrently while the writer fills the
//! next one. The part being filled takes one of the concurrency slots too, so memory stays at
//! concurrency × part size whatever the object's size.

use std::io::Write;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use haypack_store::{AnswerProblem, Error, Finished, ObjectMeta, ObjectWriter, PutMode, Result, Store};
use md5::Digest;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::{MIN_PART_SIZE, S3Store, content_md5};

/// The largest part S3 takes, uploaded or copied (UploadPartCopy).
const MAX_PART: u64 = 5 << 30;
/// The most parts one multipart upload may have.
const MAX_PARTS: u32 = 10_000;
/// Parts written at one part size before it doubles: see [`part_size`].
const PARTS_PER_SIZE: u32 = 1_000;

/// What a resumable writer found under its name.
enum Existing {
    /// Not looked yet (or not resumable: never looked).
    Unknown,
    /// Nothing there: upload.
    Absent,
    /// An object is there: hash the parts instead of sending them, and keep it if its ETag is
    /// the one these bytes would get.
    Present { meta: ObjectMeta, part_md5s: Vec<[u8; 16]> },
}

/// A multipart upload behind `std::io::Write`. Use it from a blocking thread: it waits for
/// upload slots. An object smaller than one part is sent with a single PUT; a writer dropped
/// unfinished aborts its upload.
pub(crate) struct S3Writer {
    store: S3Store,
    name: String,
    key: String,
    handle: Handle,
    buf: Vec<u8>,
    /// The slot `buf` holds: it goes with the part to its upload.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    upload_id: Option<String>,
    next_part: i32,
    parts: Vec<JoinHandle<Result<CompletedPart>>>,
    slots: Arc<Semaphore>,
    size: u64,
    /// Parts cut from the stream so far (uploaded, copied, or hashed against an object already
    /// there): what the part size grows by.
    parts_cut: u32,
    resumable: bool,
    existing: Existing,
}

impl S3Writer {
    pub fn new(store: S3Store, name: &str, key: String, resumable: bool) -> Result<Self> {
        let handle = Handle::try_current().map_err(|_| Error::Remote {
            store: store.describe(),
            op: "writing",
            name: name.to_owned(),
            detail: "an S3 upload needs a tokio runtime".into(),
        })?;
        let slots = Arc::new(Semaphore::new(store.inner.opts.concurrency.max(1)));
        let permit = slots.clone().try_acquire_owned().ok();
        let buf = store.inner.buffer(store.inner.opts.part_size);
        Ok(S3Writer {
            store,
            name: name.to_owned(),
            key,
            handle,
            buf,
            permit,
            upload_id: None,
            next_part: 1,
            parts: Vec::new(),
            slots,
            size: 0,
            parts_cut: 0,
            resumable,
            existing: Existing::Unknown,
        })
    }

    /// For a resumable write, looks once for an object already under the name.
    fn look(&mut self) -> Result<()> {
        if self.resumable && matches!(self.existing, Existing::Unknown) {
            self.existing = match self.handle.block_on(self.store.head(&self.name)) {
                Ok(meta) => Existing::Present { meta, part_md5s: Vec::new() },
                Err(Error::NotFound { .. }) => Existing::Absent,
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }

    /// Keeps the object already there if these bytes would get its ETag: S3, Garage and moto
    /// give a single PUT the MD5 of its bytes, and a multipart upload the MD5 of its parts'
    /// MD5s followed by `-` and the part count.
    fn keep_or_refuse(&mut self, meta: ObjectMeta, mut part_md5s: Vec<[u8; 16]>) -> Result<Finished> {
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let expected = if part_md5s.is_empty() {
            hex(&md5::Md5::digest(&self.buf))
        } else {
            if !self.buf.is_empty() {
                part_md5s.push(md5::Md5::digest(&self.buf).into());
            }
            format!("{}-{}", hex(&md5::Md5::digest(part_md5s.concat())), part_md5s.len())
        };
        if meta.size == self.size && meta.version.trim_matches('"') == expected {
            tracing::info!("{} is already there with the same bytes: not sent again", self.name);
            return Ok(Finished::Kept(meta));
        }
        Err(Error::Conflict {
            store: self.store.describe(),
            name: self.name.clone(),
            detail: "is already there with other bytes (left by an interrupted run over a different source?); \
                     a forced pack replaces it"
                .into(),
        })
    }

    fn part_size(&self) -> usize {
        part_size(self.store.inner.opts.part_size, self.parts_cut)
    }

    /// Refuses an upload that would need more parts than S3 takes, before `more` parts are
    /// started: they are numbered from `next_part` on.
    fn check_parts(&self, more: u64) -> Result<()> {
        let last = u64::from(self.next_part.max(1) as u32) + more - 1;
        if last <= u64::from(MAX_PARTS) {
            return Ok(());
        }
        Err(Error::TooLarge {
            store: self.store.describe(),
            name: self.name.clone(),
            detail: format!(
                "would need more than {MAX_PARTS} parts ({} bytes written so far, {more} more parts asked), \
                 which S3 does not take: nothing more was sent; write smaller objects (a smaller pack size)",
                self.size
            ),
        })
    }

    /// Starts the multipart upload if it is not yet, and fails now if a part already failed;
    /// then numbers the next part.
    fn next_part(&mut self) -> Result<(i32, String)> {
        let i = self.store.inner.clone();
        if self.upload_id.is_none() {
            let req = i.client.create_multipart_upload().bucket(&i.bucket).key(&self.key).send();
            let resp =
                self.handle.block_on(req).map_err(|e| self.store.remote("starting the upload of", &self.name, e))?;
            let id = resp.upload_id().filter(|id| !id.is_empty()).ok_or_else(|| Error::BadAnswer {
                store: self.store.describe(),
                op: "starting the upload of",
                name: self.name.clone(),
                problem: AnswerProblem::NoUploadId,
            })?;
            self.upload_id = Some(id.to_owned());
        }
        // A part that already failed fails the object now, not after uploading the rest.
        if let Some(pos) = self.parts.iter().position(|t| t.is_finished()) {
            let done = self.parts.remove(pos);
            let part = self.handle.block_on(done).map_err(|e| self.join_error(e))??;
            self.parts.insert(pos, self.handle.spawn(async move { Ok(part) }));
        }
        self.check_parts(1)?;
        let number = self.next_part;
        self.next_part += 1;
        Ok((number, self.upload_id.clone().unwrap_or_default()))
    }

    /// Starts uploading the buffered bytes as the next part, then waits for a free slot to
    /// fill the next one in.
    fn send_part(&mut self) -> Result<()> {
        self.look()?;
        self.parts_cut += 1;
        if let Existing::Present { part_md5s, .. } = &mut self.existing {
            part_md5s.push(md5::Md5::digest(&self.buf).into());
            self.buf.clear();
            return Ok(());
        }
        let (number, upload_id) = self.next_part()?;
        let permit = self.permit.take();
        let data = bytes::Bytes::from(std::mem::take(&mut self.buf));
        let (store, name, key) = (self.store.clone(), self.name.clone(), self.key.clone());
        self.parts.push(self.handle.spawn(async move {
            let _permit = permit;
            let i = &store.inner;
            let resp = i
                .client
                .upload_part()
                .bucket(&i.bucket)
                .key(&key)
                .upload_id(upload_id)
                .part_number(number)
                .content_md5(content_md5(&data))
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map_err(|e| store.remote("uploading a part of", &name, e))?;
            // The request is done with its copy: the buffer can carry another part.
            store.inner.recycle(data);
            Ok(CompletedPart::builder().set_e_tag(resp.e_tag().map(str::to_owned)).part_number(number).build())
        }));
        self.permit = Some(self.slot());
        self.buf = self.store.inner.buffer(self.part_size());
        Ok(())
    }

    /// Waits for one of the writer's slots: a part uploading, copying, or being filled.
    fn slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.handle.block_on(self.slots.clone().acquire_owned()).expect("the semaphore is never closed")
    }

    fn join_error(&self, e: tokio::task::JoinError) -> Error {
        Error::Remote { store: self.store.describe(), op: "uploading", name: self.name.clone(), detail: e.to_string() }
    }

    fn complete(&mut self) -> Result<Finished> {
        self.look()?;
        if let Existing::Present { meta, part_md5s } = std::mem::replace(&mut self.existing, Existing::Absent) {
            return self.keep_or_refuse(meta, part_md5s);
        }
        if self.upload_id.is_none() {
            let data = std::mem::take(&mut self.buf).into();
            return self.handle.block_on(self.store.put(&self.name, data, PutMode::Overwrite)).map(Finished::Written);
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let mut parts = Vec::with_capacity(self.parts.len());
        for task in std::mem::take(&mut self.parts) {
            parts.push(self.handle.block_on(task).map_err(|e| self.join_error(e))??);
        }
        let i = self.store.inner.clone();
        let req = i
            .client
            .complete_multipart_upload()
            .bucket(&i.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.clone().unwrap_or_default())
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send();
        let resp =
            self.handle.block_on(req).map_err(|e| self.store.remote("completing the upload of", &self.name, e))?;
        self.upload_id = None;
        let version = resp.e_tag().unwrap_or_default().to_owned();
        let modified = Some(std::time::SystemTime::now());
        Ok(Finished::Written(ObjectMeta { name: self.name.clone(), size: self.size, version, modified }))
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.part_size() - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == self.part_size() {
            self.send_part().map_err(std::io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn finish(mut self: Box<Self>) -> Result<Finished> {
        self.complete()
    }

    /// Every part but the last must be at least 5 MiB: bytes already buffered are topped up to
    /// that by the caller, and the copy itself must be that long.
    fn copy_lead(&self, len: u64) -> Option<u64> {
        let lead = if self.buf.is_empty() { 0 } else { MIN_PART_SIZE.saturating_sub(self.buf.len()) as u64 };
        let copies = self.store.inner.opts.server_side_copy && !self.resumable;
        (copies && len >= lead + MIN_PART_SIZE as u64).then_some(lead)
    }

    fn copy_range(&mut self, source: &str, range: std::ops::Range<u64>, version: &str) -> Result<()> {
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let source_key = self.store.key(source)?;
        let copy_source = format!("{}/{}", self.store.inner.bucket, url_path(&source_key));
        // A copied part may be up to 5 GiB: cut longer ranges into even parts.
        let len = range.end.saturating_sub(range.start);
        let count = len.div_ceil(MAX_PART);
        self.check_parts(count)?;
        self.parts_cut = self.parts_cut.saturating_add(count as u32);
        let mut at = range.start;
        for n in 0..count {
            let end = if n + 1 == count { range.end } else { at + len / count };
            let (number, upload_id) = self.next_part()?;
            // The empty buffer's slot goes to the first copy (with one slot, waiting for
            // another would wait for ever); the buffer takes one back after the last.
            let permit = match self.permit.take() {
                Some(p) => p,
                None => self.slot(),
            };
            let (store, name, key) = (self.store.clone(), self.name.clone(), self.key.clone());
            let (copy_source, version) = (copy_source.clone(), version.to_owned());
            self.parts.push(self.handle.spawn(async move {
                let _permit = permit;
                let i = &store.inner;
                let resp = i
                    .client
                    .upload_part_copy()
                    .bucket(&i.bucket)
                    .key(&key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(copy_source)
                    .copy_source_range(format!("bytes={at}-{}", end - 1))
                    .copy_source_if_match(version)
                    .send()
                    .await
                    .map_err(|e| store.remote("copying a part of", &name, e))?;
                let etag = resp.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
                Ok(CompletedPart::builder().set_e_tag(etag).part_number(number).build())
            }));
            at = end;
        }
        self.permit = Some(self.slot());
        self.size += len;
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Unfinished (an error, or the writer was abandoned): stop the parts and abort the
        // upload, so nothing is left billing. Best effort: `haypack uploads` finds any leftover.
        for task in &self.parts {
            task.abort();
        }
        if let Some(upload_id) = self.upload_id.take() {
            let i = self.store.inner.clone();
            let key = self.key.clone();
            self.handle.spawn(async move {
                let r = i.client.abort_multipart_upload().bucket(&i.bucket).key(&key).upload_id(upload_id).send().await;
                if let Err(e) = r {
                    tracing::warn!("could not abort the upload of {key}: {e}");
                }
            });
        }
    }
}

/// The size of the part that follows `cut` parts: `base` for the first 1,000, then doubling every
/// 1,000 up to S3's 5 GiB. A streaming writer does not know how long its object will be, and S3
/// takes at most 10,000 parts: growing the parts keeps memory at concurrency × `base` for objects
/// up to 1,000 parts (8 GB at the default 8 MiB), and still reaches S3's 5 TiB object limit
/// within 10,000 parts from the 5 MiB minimum (5 MiB × 1,000 × (1 + 2 + … + 512) ≈ 5 TiB).
fn part_size(base: usize, cut: u32) -> usize {
    let doublings = (cut / PARTS_PER_SIZE).min(usize::BITS - 1);
    base.saturating_mul(1 << doublings).min(MAX_PART as usize)
}

/// A key as the path part of `x-amz-copy-source`: percent-encoded, slashes kept.
fn url_path(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_so_the_largest_s3_object_fits_in_10000_of_them() {
        let base = crate::MIN_PART_SIZE;
        assert_eq!(part_size(base, 0), base);
        assert_eq!(part_size(base, 999), base);
        assert_eq!(part_size(base, 1000), 2 * base);
        // From the CLI's default part size, 8 MiB, 10,000 parts reach S3's 5 TiB object; from
        // the 5 MiB minimum, 4.9 TB.
        let total: u64 = (0..MAX_PARTS).map(|n| part_size(8 << 20, n) as u64).sum();
        assert!(total >= 5 << 40, "{total}");
        assert!((0..MAX_PARTS).all(|n| part_size(8 << 20, n) as u64 <= MAX_PART));
        assert_eq!(part_size(8 << 20, u32::MAX), MAX_PART as usize);
    }
}

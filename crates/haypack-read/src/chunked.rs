//! The one way a record past [`Budget::WHOLE`] is read, by every path (get, extract, verify,
//! compact's checks, the HTTP gateway): its stored bytes in chunks of at most [`Budget::CHUNK`],
//! decoded [`Budget::STEP`] bytes at a time, each step on the blocking pool so that a record that
//! decodes to gigabytes never holds an async worker for longer than one step.

use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use haypack_format::{Budget, Dictionary, Entry, RecordDecoder, RecordFrame};
use tokio::sync::Semaphore;

use crate::{Archive, Error, Result, check_header};

/// A record's decoder and the one step of output it fills: all a chunked read holds besides the
/// chunk it is decoding.
pub(crate) struct Chunked {
    decoder: RecordDecoder,
    buf: Box<[u8]>,
}

impl Chunked {
    /// Starts decoding the record `frame` (its header already checked), with `dict` if it names
    /// one.
    pub(crate) fn new(frame: RecordFrame, dict: Option<&Dictionary>) -> haypack_format::Result<Self> {
        Ok(Chunked { decoder: RecordDecoder::new(frame, dict)?, buf: vec![0; Budget::STEP].into_boxed_slice() })
    }

    /// Parses the header at the start of `first` (a record's first bytes), checks it against
    /// `entry`, and starts decoding; returns the decoder and where the content starts in `first`.
    pub(crate) fn start(entry: &Entry, dicts: &[Dictionary], first: &[u8]) -> Result<(Self, usize), String> {
        let frame = RecordFrame::parse(first).map_err(|e| e.to_string())?;
        check_header(&frame, entry)?;
        let prefix = frame.prefix_len as usize;
        let dict = dicts.iter().find(|d| d.id() == frame.header.dict_id);
        Ok((Chunked::new(frame, dict).map_err(|e| e.to_string())?, prefix))
    }

    /// The next piece of content (at most one step) decoded from `input`, which it advances;
    /// `None` once `input` is used up and all it decoded was given out. After the record's last
    /// byte, call it with an empty input until it says `None`.
    pub(crate) fn next<'s>(&'s mut self, input: &mut &[u8]) -> haypack_format::Result<Option<&'s [u8]>> {
        let n = self.decoder.decode(input, &mut self.buf)?;
        Ok((n > 0).then(|| &self.buf[..n]))
    }

    /// Decodes all of `input`, throwing the content away: for a caller that only checks.
    pub(crate) fn check(&mut self, mut input: &[u8]) -> haypack_format::Result<()> {
        while self.next(&mut input)?.is_some() {}
        Ok(())
    }

    /// Decodes what is still buffered and checks the record is complete and intact.
    pub(crate) fn finish(mut self) -> haypack_format::Result<()> {
        self.check(&[])?;
        self.decoder.finish()
    }

    /// [`Chunked::next`] on the blocking pool, for `input` it owns: the piece, copied out, and
    /// what is left of `input`.
    async fn next_off_worker(mut self, input: Bytes) -> Result<(Self, Bytes, haypack_format::Result<Option<Bytes>>)> {
        off_worker(move || {
            let mut rest = &input[..];
            let piece = self.next(&mut rest).map(|p| p.map(Bytes::copy_from_slice));
            let used = input.len() - rest.len();
            (self, input.slice(used..), piece)
        })
        .await
    }

    /// [`Chunked::check`] on the blocking pool.
    pub(crate) async fn check_off_worker(mut self, input: Bytes) -> Result<(Self, haypack_format::Result<()>)> {
        off_worker(move || {
            let r = self.check(&input);
            (self, r)
        })
        .await
    }
}

/// Runs `f` on the blocking pool. Decoding does not panic on any input; if it did, the panic
/// goes on here.
async fn off_worker<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(t) => Ok(t),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Output(std::io::Error::other("the runtime shut down while a record was decoding"))),
    }
}

/// Where a chunked read of one record stands.
struct Read<A> {
    archive: A,
    entry: Entry,
    /// `None` once the stream ended or failed.
    chunked: Option<Chunked>,
    /// Stored bytes read and not yet decoded.
    pending: Bytes,
    /// Where the next read starts, relative to the record.
    at: u64,
    gate: Option<Arc<Semaphore>>,
}

/// The content of the record `entry`, whose header `frame` was read and checked, as a stream of
/// pieces of at most [`Budget::STEP`] bytes. `first` holds the record's bytes from its start (at
/// least the prefix); the rest is read in chunks of [`Archive::read_chunk`] bytes, each read
/// holding a permit of `gate` if there is one, and released when the read is done: a consumer
/// that stops pulling holds one chunk and one step, and no permit.
///
/// Pieces come out before the whole record is checked: the stream ends with an error item if
/// the check fails, and the caller must then discard what it got.
pub(crate) fn pieces<A>(
    archive: A,
    entry: Entry,
    frame: RecordFrame,
    first: Bytes,
    gate: Option<Arc<Semaphore>>,
) -> impl Stream<Item = Result<Bytes>> + Send
where
    A: Deref<Target = Archive> + Send + Sync,
{
    let pending = first.slice((frame.prefix_len as usize).min(first.len())..);
    let at = first.len() as u64;
    // Its callers read the dictionaries first when the record names one.
    let dict = archive.loaded_dictionary(frame.header.dict_id);
    let chunked = Chunked::new(frame, dict).map_err(|e| archive.record_corrupt(&entry, e.to_string()));
    let state = chunked.map(|c| Read { archive, entry, chunked: Some(c), pending, at, gate });
    futures::stream::unfold(Some(state), |state| async move {
        let mut read = match state? {
            Ok(read) => read,
            Err(e) => return Some((Err(e), None)),
        };
        match read.step().await {
            Ok(Some(piece)) => Some((Ok(piece), Some(Ok(read)))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

impl<A: Deref<Target = Archive>> Read<A> {
    /// The next non-empty piece, `None` at a verified end.
    async fn step(&mut self) -> Result<Option<Bytes>> {
        loop {
            let Some(chunked) = self.chunked.take() else { return Ok(None) };
            if self.pending.is_empty() && self.at < self.entry.len {
                let next = (self.at + self.archive.read_chunk()).min(self.entry.len);
                let permit = match &self.gate {
                    Some(gate) => gate.clone().acquire_owned().await.ok(),
                    None => None,
                };
                self.pending = self.archive.record_range(&self.entry, self.at..next).await?;
                drop(permit);
                self.at = next;
            }
            let all_read = self.at >= self.entry.len;
            let (chunked, rest, piece) = chunked.next_off_worker(std::mem::take(&mut self.pending)).await?;
            self.pending = rest;
            let fail = |e: haypack_format::Error| self.archive.record_corrupt(&self.entry, e.to_string());
            match piece.map_err(fail)? {
                Some(piece) => {
                    self.chunked = Some(chunked);
                    return Ok(Some(piece));
                }
                None if all_read && self.pending.is_empty() => {
                    chunked.finish().map_err(fail)?;
                    return Ok(None);
                }
                None => self.chunked = Some(chunked),
            }
        }
    }
}

/// Stored bytes checked before each piece of them is let go: at most this many at a time (a
/// piece of zstd may decode to gigabytes, all on one blocking call).
const CHECK_PIECE: usize = 64 << 10;

/// `record[body]`, the stored bytes of a record held whole that a client takes as they are, in
/// pieces that each come out only once the record's bytes up to their end were checked by
/// `chunked` (which starts at `record[content..]`), and the last only once the whole record was:
/// a failed check ends the stream with an error item before its end.
pub(crate) fn checked_pieces(
    archive: Arc<Archive>,
    entry: Entry,
    chunked: Chunked,
    record: Bytes,
    content: usize,
    body: std::ops::Range<usize>,
) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    let state = (Some(chunked), content, body.start);
    futures::stream::unfold(state, move |(chunked, checked, sent)| {
        let (archive, entry, record, end) = (archive.clone(), entry.clone(), record.clone(), body.end);
        async move {
            let fail = |e: haypack_format::Error| archive.record_corrupt(&entry, e.to_string());
            let next = (checked + CHECK_PIECE).min(record.len());
            let (chunked, r) = match chunked?.check_off_worker(record.slice(checked..next)).await {
                Ok(done) => done,
                Err(e) => return Some((Err(e), (None, checked, sent))),
            };
            let r =
                r.and_then(|()| if next == record.len() { chunked.finish().map(|()| None) } else { Ok(Some(chunked)) });
            match r {
                Err(e) => Some((Err(fail(e)), (None, checked, sent))),
                Ok(chunked) => {
                    let until = next.min(end).max(sent);
                    Some((Ok(record.slice(sent..until)), (chunked, next, until)))
                }
            }
        }
    })
}

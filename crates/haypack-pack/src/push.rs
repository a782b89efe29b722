//! Copying an archive from one store to another: packs first (several at once, each a streamed
//! multipart upload on S3), the manifest last, so the destination never shows an archive whose
//! objects are not all there. An interrupted push resumes: objects already at the destination
//! with the right size are complete (an object appears only when its upload completed) and are
//! not sent again.

use std::sync::Arc;

use haypack_format::{MANIFEST_NAME, Manifest};
use haypack_store::{PutMode, Store};

use crate::{Error, Progress, Result};

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Replace a different archive already at the destination.
    pub force: bool,
    /// Objects uploaded at once.
    pub objects_in_flight: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { force: false, objects_in_flight: 2 }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// Objects sent.
    pub sent: Vec<String>,
    /// Objects already at the destination, not sent again.
    pub present: Vec<String>,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// The archive was already at the destination, manifest and all.
    pub up_to_date: bool,
    /// Unfinished uploads left by an interrupted push, aborted.
    pub aborted_uploads: usize,
}

/// Copies the archive in `src` to `dst`. `progress` hears bytes as they are sent.
pub async fn push(
    src: Arc<dyn Store>,
    dst: Arc<dyn Store>,
    opts: PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<PushReport> {
    let manifest_bytes = src.get(MANIFEST_NAME).await?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let mut base = None;
    let mode = match dst.get(MANIFEST_NAME).await {
        Ok(existing) if existing == manifest_bytes => {
            return Ok(PushReport { up_to_date: true, ..PushReport::default() });
        }
        Ok(existing) => {
            base = Manifest::parse(&existing).ok();
            let generation = base.as_ref().map_or(0, |m| m.generation);
            if !opts.force {
                return Err(Error::ArchiveExists { dest: dst.describe(), generation });
            }
            PutMode::Update(dst.head(MANIFEST_NAME).await?.version)
        }
        Err(haypack_store::Error::NotFound { .. }) => PutMode::Create,
        Err(e) => return Err(e.into()),
    };

    let mut objects: Vec<(String, u64)> = manifest.packs.iter().map(|p| (p.name.clone(), p.size)).collect();
    objects.extend(manifest.index.objects.iter().map(|o| (o.name.clone(), o.size)));
    let mut report = PushReport::default();
    let mut todo = Vec::new();
    for (name, size) in objects {
        match dst.head(&name).await {
            Ok(meta) if meta.size == size => {
                progress.packed(1, size);
                report.present.push(name);
            }
            Ok(_) | Err(haypack_store::Error::NotFound { .. }) => todo.push((name, size)),
            Err(e) => return Err(e.into()),
        }
    }

    let mut running = tokio::task::JoinSet::new();
    let mut queue = todo.into_iter();
    loop {
        while running.len() < opts.objects_in_flight.max(1) {
            let Some((name, size)) = queue.next() else { break };
            let (src, dst, progress) = (src.clone(), dst.clone(), progress.clone());
            running.spawn(async move { copy(src, dst, name, size, progress).await });
        }
        let Some(done) = running.join_next().await else { break };
        let (name, size) = done.expect("copies do not panic")?;
        report.bytes_sent += size;
        report.sent.push(name);
    }
    if let Some(base) = &base {
        // Over an archive a `gc` may be collecting (objects found there may be retired, and
        // going): see `update::check_objects`.
        let names: Vec<(&str, u64)> = (manifest.packs.iter().map(|p| (p.name.as_str(), p.size)))
            .chain(manifest.index.objects.iter().map(|o| (o.name.as_str(), o.size)))
            .collect();
        crate::update::check_objects(&*dst, base, &names).await?;
    }
    dst.put(MANIFEST_NAME, manifest_bytes, mode).await?;
    report.sent.push(MANIFEST_NAME.to_owned());
    // Every object is complete now: an upload still open to one of them was left by an
    // interrupted run, and would be billed until aborted. Committed, so failing here is only
    // untidiness: say so, do not fail the push.
    let names: Vec<String> = report.sent.iter().chain(&report.present).cloned().collect();
    report.aborted_uploads = dst.abort_uploads(&names).await.unwrap_or_else(|e| {
        tracing::warn!("could not abort uploads left by an interrupted push: {e}");
        0
    });
    Ok(report)
}

/// Streams one object from `src` to `dst` in chunks.
async fn copy(
    src: Arc<dyn Store>,
    dst: Arc<dyn Store>,
    name: String,
    size: u64,
    progress: Arc<dyn Progress>,
) -> Result<(String, u64)> {
    let writer = dst.create(&name)?;
    let handle = tokio::runtime::Handle::current();
    let n = name.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut writer = writer;
        let mut at = 0;
        let chunk = src.read_chunk();
        while at < size {
            let end = (at + chunk).min(size);
            let chunk = handle.block_on(src.get_range(&n, at..end))?;
            std::io::Write::write_all(&mut writer, &chunk).map_err(|e| crate::writer::io_error(&n, e))?;
            progress.packed(0, end - at);
            at = end;
        }
        writer.finish()?;
        progress.packed(1, 0);
        Ok(())
    })
    .await
    .expect("copies do not panic");
    result.map(|()| (name, size))
}

//! A segment: packs and a sorted index run that a record writer left in an archive's store
//! without committing them, described by a small JSON document. Many writers (processes,
//! machines, tasks of a distributed job) each write a segment; one commit then merges them all
//! into the archive. Every type here that derives `Serialize` is part of the format.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, corrupt};
use crate::manifest::{IndexRef, Manifest, PackRef};

/// The segment format version this build writes and the newest it reads.
pub const SEGMENT_VERSION: u64 = 1;

/// What one writer wrote and did not commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Always `"haypack-segment"`.
    pub format: String,
    /// Segment format version.
    pub version: u64,
    /// The archive the segment was written into, as its store describes itself (`s3://bucket/
    /// prefix`, a directory): a segment is committed only there.
    pub archive: String,
    /// The name part unique to the writer, in every object it wrote.
    pub token: String,
    /// The program that wrote it, for diagnosis.
    pub created_by: String,
    /// Records the segment's index holds.
    pub records: u64,
    /// Their raw content bytes.
    pub raw_bytes: u64,
    /// The packs, with ids local to the segment (renumbered when committed).
    pub packs: Vec<PackRef>,
    /// The segment's sorted index run: one object, its blocks in key order, entries naming
    /// the packs by their local ids.
    pub index: IndexRef,
    /// The archive's dictionary the segment's records were compressed with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dictionary: Option<u32>,
}

impl Segment {
    /// The segment as pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("segment types always serialize");
        out.push(b'\n');
        out
    }

    /// Parses and checks a segment description: bytes that are not one and one from a newer
    /// version get their own errors; names, ids, blocks and totals must add up as in a
    /// manifest.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::NotHaypack { what: "segment", detail: format!("not JSON ({e})") })?;
        if value.get("format").and_then(|f| f.as_str()) != Some("haypack-segment") {
            return Err(Error::NotHaypack {
                what: "segment",
                detail: "no \"format\": \"haypack-segment\" field".into(),
            });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v > SEGMENT_VERSION => {
                return Err(Error::NewerVersion { what: "segment", found: v, supported: SEGMENT_VERSION });
            }
            Some(_) => {}
            None => return Err(corrupt("segment", "no numeric \"version\" field")),
        }
        let s: Segment = serde_json::from_value(value).map_err(|e| corrupt("segment", e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks the segment the way a manifest is checked, and that its index is one object.
    pub fn validate(&self) -> Result<()> {
        if self.packs.is_empty() || self.index.objects.len() != 1 {
            return Err(corrupt("segment", "a segment has at least one pack and exactly one index object"));
        }
        let dead: u64 = self.packs.iter().map(|p| p.dead_records).sum();
        let as_manifest = Manifest {
            records: self.records,
            raw_bytes: self.raw_bytes,
            packs: self.packs.clone(),
            index: self.index.clone(),
            ..Manifest::empty(self.created_by.clone())
        };
        as_manifest.validate().map_err(|e| corrupt("segment", e.to_string()))?;
        let indexed: u64 = self.index.blocks.iter().map(|b| b.records).sum();
        if indexed != self.records {
            return Err(corrupt(
                "segment",
                format!("its index holds {indexed} records, it says {} ({dead} dead)", self.records),
            ));
        }
        Ok(())
    }

    /// Every object the segment names.
    pub fn object_names(&self) -> impl Iterator<Item = &str> {
        self.packs.iter().map(|p| p.name.as_str()).chain(self.index.objects.iter().map(|o| o.name.as_str()))
    }
}

//! The manifest: the one small JSON object that names everything in an archive generation.
//! Writing it is the commit; every type here that derives `Serialize` is part of the format.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, corrupt};

/// The manifest format version this build writes and the newest it reads.
pub const MANIFEST_VERSION: u64 = 1;
/// The manifest's file name in an archive.
pub const MANIFEST_NAME: &str = "manifest.json";

/// One archive generation: its packs and its index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"haypack"`.
    pub format: String,
    /// Manifest format version.
    pub version: u64,
    /// Incremented by every commit; a reader pins the generation it opened.
    pub generation: u64,
    /// The program that wrote this generation, for diagnosis.
    pub created_by: String,
    /// Number of records.
    pub records: u64,
    /// Total raw content bytes.
    pub raw_bytes: u64,
    /// The packs, by id.
    pub packs: Vec<PackRef>,
    /// The archive index.
    pub index: IndexRef,
}

/// A pack named by the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackRef {
    /// The id index entries use to name this pack.
    pub id: u32,
    /// Object name, relative to the archive.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Records in the pack.
    pub records: u64,
    /// Raw content bytes of those records.
    pub raw_bytes: u64,
    /// CRC-32C of the whole pack.
    pub crc32c: u32,
}

/// The archive index: a sequence of blocks, located by the root held here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRef {
    /// Object name, relative to the archive.
    pub name: String,
    /// Size in bytes: the blocks end to end.
    pub size: u64,
    /// The root: one reference per block, in key order.
    pub blocks: Vec<BlockRef>,
}

/// One block of the archive index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRef {
    /// The block's first (smallest) key.
    pub first_key: String,
    /// Offset of the block in the index object.
    pub offset: u64,
    /// Length of the compressed block.
    pub len: u64,
    /// Entries in the block.
    pub records: u64,
    /// CRC-32C of the compressed block.
    pub crc32c: u32,
}

impl Manifest {
    /// An empty generation-0 manifest: what an archive is before its first commit.
    pub fn empty(created_by: impl Into<String>) -> Self {
        Manifest {
            format: "haypack".into(),
            version: MANIFEST_VERSION,
            generation: 0,
            created_by: created_by.into(),
            records: 0,
            raw_bytes: 0,
            packs: Vec::new(),
            index: IndexRef { name: String::new(), size: 0, blocks: Vec::new() },
        }
    }

    /// The manifest as pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest types always serialize");
        out.push(b'\n');
        out
    }

    /// Parses and checks a manifest. Bytes that are not a haypack manifest and a manifest from a
    /// newer version get their own errors.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::NotHaypack { what: "manifest", detail: format!("not JSON ({e})") })?;
        if value.get("format").and_then(|f| f.as_str()) != Some("haypack") {
            return Err(Error::NotHaypack { what: "manifest", detail: "no \"format\": \"haypack\" field".into() });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v > MANIFEST_VERSION => {
                return Err(Error::NewerVersion { what: "archive", found: v, supported: MANIFEST_VERSION });
            }
            Some(_) => {}
            None => return Err(corrupt("manifest", "no numeric \"version\" field")),
        }
        let m: Manifest = serde_json::from_value(value).map_err(|e| corrupt("manifest", e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks the manifest's internal consistency: safe names, unique ids, a contiguous, sorted
    /// index root and totals that add up.
    pub fn validate(&self) -> Result<()> {
        let mut ids = std::collections::HashSet::new();
        for p in &self.packs {
            check_name(&p.name, "packs/")?;
            if !ids.insert(p.id) {
                return Err(corrupt("manifest", format!("pack id {} appears twice", p.id)));
            }
        }
        if !self.index.blocks.is_empty() {
            check_name(&self.index.name, "index/")?;
        }
        let mut offset = 0;
        for (i, b) in self.index.blocks.iter().enumerate() {
            if b.offset != offset {
                return Err(corrupt("manifest", format!("index block {i} starts at {}, expected {offset}", b.offset)));
            }
            if i > 0 && self.index.blocks[i - 1].first_key >= b.first_key {
                return Err(corrupt("manifest", format!("index block {i} is out of key order")));
            }
            // Lengths come from the JSON: adding them must not wrap around to a valid size.
            offset = offset
                .checked_add(b.len)
                .ok_or_else(|| corrupt("manifest", format!("index block {i} ends past 2^64 bytes")))?;
        }
        if offset != self.index.size {
            return Err(corrupt(
                "manifest",
                format!("index blocks add up to {offset} bytes, index is {}", self.index.size),
            ));
        }
        let indexed = (self.index.blocks.iter())
            .try_fold(0u64, |n, b| n.checked_add(b.records))
            .ok_or_else(|| corrupt("manifest", "index block record counts add up past 2^64"))?;
        if indexed != self.records {
            return Err(corrupt("manifest", format!("index holds {indexed} records, manifest says {}", self.records)));
        }
        Ok(())
    }

    /// The pack with this id.
    pub fn pack(&self, id: u32) -> Option<&PackRef> {
        self.packs.iter().find(|p| p.id == id)
    }

    /// Total bytes of all packs.
    pub fn pack_bytes(&self) -> u64 {
        // Sizes come from JSON: saturate rather than wrap or panic.
        self.packs.iter().fold(0, |n, p| n.saturating_add(p.size))
    }

    /// The index block that holds `key`, if any block could.
    pub fn block_for(&self, key: &str) -> Option<usize> {
        let after = self.index.blocks.partition_point(|b| b.first_key.as_str() <= key);
        after.checked_sub(1)
    }
}

/// An object name inside an archive: `dir` then one plain file name, so no name in a manifest
/// can reach outside the archive.
fn check_name(name: &str, dir: &str) -> Result<()> {
    let ok = name.strip_prefix(dir).is_some_and(|file| {
        !file.is_empty()
            && !file.starts_with('.')
            && file.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if ok { Ok(()) } else { Err(corrupt("manifest", format!("object name {name:?} is not a plain name under {dir}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::empty("test");
        m.generation = 1;
        m.records = 3;
        m.packs.push(PackRef {
            id: 1,
            name: "packs/000001.hpk.zst".into(),
            size: 10,
            records: 3,
            raw_bytes: 9,
            crc32c: 1,
        });
        m.index = IndexRef {
            name: "index/000001.hpi".into(),
            size: 30,
            blocks: vec![
                BlockRef { first_key: "a".into(), offset: 0, len: 10, records: 2, crc32c: 0 },
                BlockRef { first_key: "m".into(), offset: 10, len: 20, records: 1, crc32c: 0 },
            ],
        };
        m
    }

    #[test]
    fn manifests_round_trip() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
        assert_eq!(m.block_for("0"), None);
        assert_eq!(m.block_for("a"), Some(0));
        assert_eq!(m.block_for("l"), Some(0));
        assert_eq!(m.block_for("z"), Some(1));
    }

    #[test]
    fn foreign_newer_and_unsafe_manifests_are_refused() {
        assert!(matches!(Manifest::parse(b"<html>"), Err(Error::NotHaypack { .. })));
        assert!(matches!(Manifest::parse(br#"{"format":"other"}"#), Err(Error::NotHaypack { .. })));
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["version"] = 2.into();
        let newer = serde_json::to_vec(&v).unwrap();
        assert!(matches!(Manifest::parse(&newer), Err(Error::NewerVersion { found: 2, .. })));
        for bad in ["packs/../../etc/passwd", "/etc/passwd", "packs/", "index/x", "packs/.hidden"] {
            let mut m = sample();
            m.packs[0].name = bad.into();
            assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })), "{bad}");
        }
        let mut m = sample();
        m.index.blocks[1].offset = 11;
        assert!(Manifest::parse(&m.to_json()).is_err());
    }

    #[test]
    fn totals_that_wrap_are_corrupt() {
        // Found by review of what the `manifest` fuzz target reaches: sums overflowed.
        let mut m = sample();
        m.index.blocks[0].len = u64::MAX;
        m.index.blocks[1].offset = u64::MAX;
        m.index.size = 19;
        assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })));
        let mut m = sample();
        m.index.blocks[0].records = u64::MAX;
        m.records = 0;
        assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })));
    }
}

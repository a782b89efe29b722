//! The manifest: the one small JSON object that names everything in an archive generation.
//! Writing it is the commit; every type here that derives `Serialize` is part of the format.

use serde::{Deserialize, Serialize};

use crate::dict::Dictionary;
use crate::error::{Error, Result, corrupt};

/// The manifest format version this build writes and the newest it reads.
pub const MANIFEST_VERSION: u64 = 4;
/// The oldest manifest format version this build reads.
pub const OLDEST_MANIFEST_VERSION: u64 = 1;
/// The most JSON a root written by this build takes in the manifest, so that the manifest stays
/// small at any record count: past this, the root lists branches (nodes listing pages).
pub const ROOT_BYTES: usize = 32 << 10;
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
    /// Number of live records: the records the index holds.
    pub records: u64,
    /// Total raw content bytes of the live records.
    pub raw_bytes: u64,
    /// The packs, by id.
    pub packs: Vec<PackRef>,
    /// The archive index.
    pub index: IndexRef,
    /// Objects earlier generations used and this one does not: kept for readers still pinned to
    /// those generations until `gc` deletes them after a grace period.
    #[serde(default)]
    pub retired: Vec<Retired>,
    /// The zstd dictionaries records were compressed with, by id: each in an object of its own,
    /// read by a reader only when a record names it (inline in versions 2 and 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "dictionary_refs")]
    pub dictionaries: Vec<DictRef>,
}

/// A zstd dictionary of the archive, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DictRef {
    /// In an object of its own (version 4): `index/dict-…` holding the dictionary's bytes.
    Object {
        /// The id records name it by.
        id: u32,
        /// Object name, relative to the archive.
        name: String,
        /// Size in bytes.
        size: u64,
        /// CRC-32C of the bytes.
        crc32c: u32,
    },
    /// In the manifest itself (versions 2 and 3; an archive upgraded since keeps it there).
    Inline(Dictionary),
}

impl DictRef {
    /// The id records name it by.
    pub fn id(&self) -> u32 {
        match self {
            DictRef::Object { id, .. } => *id,
            DictRef::Inline(d) => d.id(),
        }
    }

    /// The object holding it, if it is not inline.
    pub fn object(&self) -> Option<&str> {
        match self {
            DictRef::Object { name, .. } => Some(name),
            DictRef::Inline(_) => None,
        }
    }

    /// The dictionary's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            DictRef::Object { size, .. } => *size,
            DictRef::Inline(d) => d.bytes().len() as u64,
        }
    }

    /// The dictionary, from the bytes of its object (checked against its size and CRC), or as
    /// the manifest holds it.
    pub fn load(&self, bytes: Option<&[u8]>) -> Result<Dictionary> {
        match (self, bytes) {
            (DictRef::Inline(d), _) => Ok(d.clone()),
            (DictRef::Object { id, name, size, crc32c }, Some(b)) => {
                let crc = crc32c::crc32c(b);
                if b.len() as u64 != *size || crc != *crc32c {
                    let detail = format!(
                        "{name}: {} bytes with checksum {crc:#010x}, the manifest says {size} and {crc32c:#010x}",
                        b.len()
                    );
                    return Err(corrupt("dictionary", detail));
                }
                Dictionary::new(*id, b.to_vec())
            }
            (DictRef::Object { name, .. }, None) => Err(corrupt("dictionary", format!("{name} was not read"))),
        }
    }
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
    /// Records written to the pack.
    pub records: u64,
    /// Raw content bytes of those records.
    pub raw_bytes: u64,
    /// CRC-32C of the whole pack; absent when the store assembled the pack from byte ranges of
    /// other packs (server-side copy during compaction) and no byte of it passed through
    /// haypack. Its records still carry their own checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<u32>,
    /// Records of this pack the index no longer names: deleted or replaced.
    #[serde(default)]
    pub dead_records: u64,
    /// Bytes those dead records take in the pack, which compaction would reclaim.
    #[serde(default)]
    pub dead_bytes: u64,
}

/// The archive index: a tree of blocks in key order, each in one of a few index objects, whose
/// root is held here. A new generation rewrites only the pages its changes touch, into a new
/// object, and keeps referring to the others where they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRef {
    /// The objects holding the blocks.
    pub objects: Vec<IndexObject>,
    /// The root, in key order: one reference per leaf (versions 1–3), per page, or per branch
    /// (version 4; see [`BlockRef::head`]).
    pub blocks: Vec<BlockRef>,
}

/// An object holding index blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexObject {
    /// Object name, relative to the archive.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// One reference of the archive index's root or of a node: a byte range of an index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRef {
    /// The object holding the block: its position in [`IndexRef::objects`].
    pub object: u32,
    /// The block's first (smallest) key.
    pub first_key: String,
    /// Offset of the block in its object.
    pub offset: u64,
    /// Length of the range.
    pub len: u64,
    /// 0 when the range is one leaf (a compressed index block); else the length of the node
    /// that ends it: a page (leaves, then the node listing them) when the node is shorter than
    /// the range, a branch (a node listing pages) when it is the whole range.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub head: u64,
    /// Entries below it.
    pub records: u64,
    /// CRC-32C of the leaf, or of the node that ends the range.
    pub crc32c: u32,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl BlockRef {
    /// Whether the range is a branch: a node listing pages, found only in a root too long
    /// to list the pages themselves.
    pub fn is_branch(&self) -> bool {
        self.head != 0 && self.head == self.len
    }
}

/// An object no generation from this one on refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retired {
    /// Object name, relative to the archive.
    pub name: String,
    /// The first generation that no longer refers to it.
    pub generation: u64,
    /// When that generation was committed, in seconds since the Unix epoch.
    pub since: u64,
}

/// Whether `root` fits in [`ROOT_BYTES`] of JSON.
pub fn root_fits(root: &[BlockRef]) -> bool {
    serde_json::to_vec(root).is_ok_and(|j| j.len() <= ROOT_BYTES)
}

/// Whether a manifest can name `name`: a plain name under `packs/` or `index/`.
pub fn is_object_name(name: &str) -> bool {
    check_name(name, "packs/").is_ok() || check_name(name, "index/").is_ok()
}

/// The pack id after `id`: an error at the largest one rather than a wrap to 0.
pub fn pack_id_after(id: u32) -> Result<u32> {
    id.checked_add(1).ok_or(Error::Exhausted { what: "pack id", value: id.into() })
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
            index: IndexRef::default(),
            retired: Vec::new(),
            dictionaries: Vec::new(),
        }
    }

    /// The manifest as pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest types always serialize");
        out.push(b'\n');
        out
    }

    /// Parses and checks a manifest of any version this build reads. Bytes that are not a
    /// haypack manifest and a manifest from a newer version get their own errors.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::NotHaypack { what: "manifest", detail: format!("not JSON ({e})") })?;
        if value.get("format").and_then(|f| f.as_str()) != Some("haypack") {
            return Err(Error::NotHaypack { what: "manifest", detail: "no \"format\": \"haypack\" field".into() });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v > MANIFEST_VERSION => {
                return Err(Error::NewerVersion { what: "archive", found: v, supported: MANIFEST_VERSION });
            }
            Some(1) => upgrade_v1(&mut value)?,
            Some(_) => {}
            None => return Err(corrupt("manifest", "no numeric \"version\" field")),
        }
        let m: Manifest = serde_json::from_value(value).map_err(|e| corrupt("manifest", e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks the manifest's internal consistency: safe names, unique ids, a sorted index root
    /// whose blocks lie inside their objects, and totals that add up.
    pub fn validate(&self) -> Result<()> {
        let mut ids = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        let mut live_records = 0u64;
        for p in &self.packs {
            check_name(&p.name, "packs/")?;
            if !ids.insert(p.id) || !names.insert(p.name.as_str()) {
                return Err(corrupt("manifest", format!("pack {} ({}) appears twice", p.id, p.name)));
            }
            if p.dead_records > p.records || p.dead_bytes > p.size {
                return Err(corrupt(
                    "manifest",
                    format!("pack {} has more dead records or bytes than it holds", p.name),
                ));
            }
            live_records = live_records.saturating_add(p.records - p.dead_records);
        }
        if live_records != self.records {
            return Err(corrupt(
                "manifest",
                format!("packs hold {live_records} live records, manifest says {}", self.records),
            ));
        }
        for o in &self.index.objects {
            check_name(&o.name, "index/")?;
            if !names.insert(o.name.as_str()) {
                return Err(corrupt("manifest", format!("object {} appears twice", o.name)));
            }
        }
        let mut used = vec![false; self.index.objects.len()];
        for (i, b) in self.index.blocks.iter().enumerate() {
            let object = self.index.objects.get(b.object as usize).ok_or_else(|| {
                corrupt("manifest", format!("index block {i} is in object {}, which is not listed", b.object))
            })?;
            used[b.object as usize] = true;
            // Lengths come from the JSON: adding them must not wrap around to a valid size.
            if b.offset.checked_add(b.len).is_none_or(|end| end > object.size) {
                return Err(corrupt("manifest", format!("index block {i} runs past the end of {}", object.name)));
            }
            if b.head > b.len || (b.head != 0 && self.version < 4) {
                return Err(corrupt("manifest", format!("index block {i} has a head its version cannot have")));
            }
            if i > 0 && self.index.blocks[i - 1].first_key >= b.first_key {
                return Err(corrupt("manifest", format!("index block {i} is out of key order")));
            }
        }
        // Below branches, pages may lie in any object: the root alone cannot tell which it uses.
        let branches = self.index.blocks.iter().any(BlockRef::is_branch);
        if let Some(unused) = used.iter().position(|u| !u).filter(|_| !branches) {
            let name = &self.index.objects[unused].name;
            return Err(corrupt("manifest", format!("index object {name} holds no block of the root")));
        }
        let indexed = (self.index.blocks.iter())
            .try_fold(0u64, |n, b| n.checked_add(b.records))
            .ok_or_else(|| corrupt("manifest", "index block record counts add up past 2^64"))?;
        if indexed != self.records {
            return Err(corrupt("manifest", format!("index holds {indexed} records, manifest says {}", self.records)));
        }
        let mut dict_ids = std::collections::HashSet::new();
        if let Some(d) = self.dictionaries.iter().find(|d| !dict_ids.insert(d.id())) {
            return Err(corrupt("manifest", format!("dictionary {} appears twice", d.id())));
        }
        for name in self.dictionaries.iter().filter_map(DictRef::object) {
            check_name(name, "index/")?;
            if !names.insert(name) {
                return Err(corrupt("manifest", format!("object {name} appears twice")));
            }
        }
        for r in &self.retired {
            check_name(&r.name, if r.name.starts_with("index/") { "index/" } else { "packs/" })?;
            if names.contains(r.name.as_str()) {
                return Err(corrupt("manifest", format!("{} is both in use and retired", r.name)));
            }
        }
        Ok(())
    }

    /// The generation the next commit on top of this one gets. Counters never wrap: at its
    /// largest value this is an error, not generation 0.
    pub fn next_generation(&self) -> Result<u64> {
        (self.generation.checked_add(1)).ok_or(Error::Exhausted { what: "generation", value: self.generation })
    }

    /// The id a pack added on top of this generation gets first: one past the largest in use.
    pub fn next_pack_id(&self) -> Result<u32> {
        let max = self.packs.iter().map(|p| p.id).max().unwrap_or(0);
        pack_id_after(max)
    }

    /// The dictionary with this id.
    pub fn dictionary(&self, id: u32) -> Option<&DictRef> {
        self.dictionaries.iter().find(|d| d.id() == id)
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

    /// Total bytes of all index objects, including blocks later generations replaced.
    pub fn index_bytes(&self) -> u64 {
        self.index.objects.iter().fold(0, |n, o| n.saturating_add(o.size))
    }

    /// Every object this generation refers to: packs, then index objects and dictionaries.
    pub fn object_names(&self) -> impl Iterator<Item = &str> {
        let packs = self.packs.iter().map(|p| p.name.as_str());
        let dicts = self.dictionaries.iter().filter_map(DictRef::object);
        packs.chain(self.index.objects.iter().map(|o| o.name.as_str())).chain(dicts)
    }

    /// The index block that holds `key`, if any block could.
    pub fn block_for(&self, key: &str) -> Option<usize> {
        let after = self.index.blocks.partition_point(|b| b.first_key.as_str() <= key);
        after.checked_sub(1)
    }
}

/// Rewrites a version-1 manifest's JSON as version 2 says the same thing: v1 kept the index in
/// one object, named by `index.name`, and had no deletions. The result is a version-2 manifest
/// (its JSON is v2's shape, so it must say so); a writer commits the current version on top of it.
fn upgrade_v1(value: &mut serde_json::Value) -> Result<()> {
    let bad = |detail: &str| corrupt("manifest", format!("version 1 index: {detail}"));
    let index = value.get_mut("index").and_then(|i| i.as_object_mut()).ok_or_else(|| bad("missing"))?;
    let name = index.remove("name").ok_or_else(|| bad("no \"name\""))?;
    let size = index.remove("size").ok_or_else(|| bad("no \"size\""))?;
    let blocks = index.get_mut("blocks").and_then(|b| b.as_array_mut()).ok_or_else(|| bad("no \"blocks\""))?;
    let mut end = 0u64;
    for b in blocks.iter_mut() {
        let b = b.as_object_mut().ok_or_else(|| bad("a block is not an object"))?;
        // v1 blocks tiled the object from offset 0, which v2 no longer requires: check it here.
        let (offset, len) = (b.get("offset").and_then(|v| v.as_u64()), b.get("len").and_then(|v| v.as_u64()));
        if offset != Some(end) {
            return Err(bad("blocks are not contiguous"));
        }
        end = end.checked_add(len.ok_or_else(|| bad("a block has no length"))?).ok_or_else(|| bad("too long"))?;
        b.insert("object".into(), 0.into());
    }
    if Some(end) != size.as_u64() {
        return Err(bad("block lengths do not add up to its size"));
    }
    let objects = if blocks.is_empty() { vec![] } else { vec![serde_json::json!({ "name": name, "size": size })] };
    index.insert("objects".into(), objects.into());
    value["version"] = 2.into();
    Ok(())
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

/// Dictionaries in the manifest as `{"id": N, "zstd": "<base64 of the dictionary>"}`.
mod dictionary_refs {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::DictRef;
    use crate::dict::Dictionary;

    /// A dictionary as JSON: `zstd` (inline, base64) or `name`, `size` and `crc32c`.
    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Json {
        id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zstd: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        crc32c: Option<u32>,
    }

    pub fn serialize<S: Serializer>(dicts: &[DictRef], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(dicts.iter().map(|d| match d {
            DictRef::Inline(d) => {
                Json { id: d.id(), zstd: Some(STANDARD.encode(d.bytes())), name: None, size: None, crc32c: None }
            }
            DictRef::Object { id, name, size, crc32c } => {
                Json { id: *id, zstd: None, name: Some(name.clone()), size: Some(*size), crc32c: Some(*crc32c) }
            }
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DictRef>, D::Error> {
        (Vec::<Json>::deserialize(d)?.into_iter())
            .map(|j| match j {
                Json { id, zstd: Some(zstd), name: None, size: None, crc32c: None } => {
                    let bytes =
                        STANDARD.decode(&zstd).map_err(|e| D::Error::custom(format!("dictionary {id}: {e}")))?;
                    Ok(DictRef::Inline(Dictionary::new(id, bytes).map_err(D::Error::custom)?))
                }
                Json { id, zstd: None, name: Some(name), size: Some(size), crc32c: Some(crc32c) } => {
                    if id == 0 || size == 0 || size > crate::MAX_DICTIONARY as u64 {
                        return Err(D::Error::custom(format!("dictionary {id}: id 0 or {size} bytes")));
                    }
                    Ok(DictRef::Object { id, name, size, crc32c })
                }
                Json { id, .. } => Err(D::Error::custom(format!(
                    "dictionary {id}: either \"zstd\", or \"name\", \"size\" and \"crc32c\""
                ))),
            })
            .collect()
    }
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
            records: 4,
            raw_bytes: 9,
            crc32c: Some(1),
            dead_records: 1,
            dead_bytes: 2,
        });
        m.index = IndexRef {
            objects: vec![
                IndexObject { name: "index/000001.hpi".into(), size: 30 },
                IndexObject { name: "index/000002-ab12.hpi".into(), size: 12 },
            ],
            blocks: vec![
                BlockRef { object: 0, first_key: "a".into(), offset: 0, len: 10, head: 0, records: 2, crc32c: 0 },
                BlockRef { object: 1, first_key: "m".into(), offset: 2, len: 10, head: 0, records: 1, crc32c: 0 },
            ],
        };
        m.retired.push(Retired { name: "packs/000000.hpk.zst".into(), generation: 1, since: 1_700_000_000 });
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
        assert_eq!(m.index_bytes(), 42);
    }

    #[test]
    fn version_1_manifests_read_as_version_2() {
        let v1 = br#"{"format":"haypack","version":1,"generation":1,"created_by":"haypack 0.1.0","records":3,
            "raw_bytes":9,"packs":[{"id":1,"name":"packs/000001.hpk.zst","size":10,"records":3,"raw_bytes":9,
            "crc32c":1}],"index":{"name":"index/000001.hpi","size":30,"blocks":[
            {"first_key":"a","offset":0,"len":10,"records":2,"crc32c":0},
            {"first_key":"m","offset":10,"len":20,"records":1,"crc32c":0}]}}"#;
        let m = Manifest::parse(v1).unwrap();
        assert_eq!(m.version, 2, "read as the version-2 manifest it is equivalent to");
        // Found by the `manifest` fuzz target: the upgraded manifest must survive a round trip.
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
        assert_eq!(m.index.objects, [IndexObject { name: "index/000001.hpi".into(), size: 30 }]);
        assert_eq!(m.index.blocks[1].object, 0);
        assert_eq!((m.packs[0].dead_records, m.packs[0].dead_bytes), (0, 0));
        let gap = String::from_utf8(v1.to_vec()).unwrap().replace(r#""offset":10"#, r#""offset":11"#);
        assert!(matches!(Manifest::parse(gap.as_bytes()), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn foreign_newer_and_unsafe_manifests_are_refused() {
        assert!(matches!(Manifest::parse(b"<html>"), Err(Error::NotHaypack { .. })));
        assert!(matches!(Manifest::parse(br#"{"format":"other"}"#), Err(Error::NotHaypack { .. })));
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["version"] = (MANIFEST_VERSION + 1).into();
        let newer = serde_json::to_vec(&v).unwrap();
        assert!(
            matches!(Manifest::parse(&newer), Err(Error::NewerVersion { found, .. }) if found == MANIFEST_VERSION + 1)
        );
        for bad in ["packs/../../etc/passwd", "/etc/passwd", "packs/", "index/x", "packs/.hidden"] {
            let mut m = sample();
            m.packs[0].name = bad.into();
            assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })), "{bad}");
            let mut m = sample();
            m.retired[0].name = bad.replace("index/x", "../x");
            assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })), "retired {bad}");
        }
        let dict = |name: &str| DictRef::Object { id: 1, name: name.into(), size: 10, crc32c: 0 };
        let mut m = sample();
        m.dictionaries = vec![dict("index/dict-000001.zdict")];
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m, "a dictionary object");
        for bad in ["index/../x", "packs/000001.hpk.zst", "index/000001.hpi"] {
            m.dictionaries = vec![dict(bad)];
            assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })), "dictionary {bad}");
        }
        let mutations: [fn(&mut Manifest); 9] = [
            |m| m.index.blocks[0].head = 11,
            |m| {
                m.version = 3;
                m.index.blocks[0].head = 4;
            },
            |m| m.index.blocks[1].offset = 3,
            |m| m.index.blocks[1].object = 2,
            |m| m.index.blocks[1].first_key = "a".into(),
            |m| m.index.blocks[1].object = 0,
            |m| m.packs[0].dead_records = 0,
            |m| m.retired[0].name = "packs/000001.hpk.zst".into(),
            |m| m.index.objects[1].name = "index/000001.hpi".into(),
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut m = sample();
            mutate(&mut m);
            assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })), "mutation {i}");
        }
    }

    #[test]
    fn totals_that_wrap_are_corrupt() {
        // Found by review of what the `manifest` fuzz target reaches: sums overflowed.
        let mut m = sample();
        m.index.blocks[0].offset = u64::MAX;
        assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })));
        let mut m = sample();
        m.index.blocks[0].records = u64::MAX;
        m.records = 0;
        assert!(matches!(Manifest::parse(&m.to_json()), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn counters_at_their_largest_value_are_an_error_not_a_wrap() {
        let mut m = sample();
        assert_eq!((m.next_generation().unwrap(), m.next_pack_id().unwrap()), (2, 2));
        m.generation = u64::MAX;
        m.packs[0].id = u32::MAX;
        let err = m.next_generation().unwrap_err();
        assert!(matches!(err, Error::Exhausted { what: "generation", value: u64::MAX }), "{err}");
        assert!(err.to_string().contains("largest possible value"), "{err}");
        let err = m.next_pack_id().unwrap_err();
        assert!(matches!(err, Error::Exhausted { what: "pack id", value } if value == u32::MAX as u64), "{err}");
    }
}

//! Index nodes: the blocks above the archive index's leaves (FORMAT.md, "The archive index").
//!
//! A node lists its children in key order, each a byte range holding either a leaf (an index
//! block of entries) or a node with what lies below it. Like a leaf, it is stored column by
//! column and compressed as one zstd frame, so a reference costs a few bytes besides its first
//! key's suffix and its checksum.

use crate::bytes::{Reader, put_bytes, put_varint, put_zigzag};
use crate::entries::{
    Entry, KeyCursor, MAX_BLOCK_DECODED, Tally, common_prefix, decode_block, decoded_size, with_decompressed,
};
use crate::error::{Error, Result, corrupt};
use crate::header::check_key;
use crate::manifest::BlockRef;

/// zstd level for nodes, as for leaves: written once, read by every cold lookup.
const NODE_LEVEL: i32 = 9;

/// The most memory a node may take while it is decoded: its decompressed bytes, plus for each
/// child `size_of::<Child>()`, its first key and its object name. The packer's nodes take a few
/// hundred KiB at most (a page lists tens of leaves; a branch a few thousand pages).
pub const MAX_NODE_DECODED: usize = 8 << 20;

/// The longest object name a node may hold: names are `index/` and a short file name.
const MAX_OBJECT_NAME: usize = 255;

/// What a whole page may take decoded, for readers that take pages whole: the packer's pages
/// hold at most 4 MiB of keys plus 24 bytes per entry, which decode to ~20 MiB with the
/// shortest keys.
pub const MAX_PAGE_DECODED: usize = 64 << 20;

/// One child of a node: a byte range of an index object, and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Child {
    /// The smallest key below the child.
    pub first_key: String,
    /// The index object holding it; empty when it lies in the same object as the node, at an
    /// offset counted from the start of the range the node's own reference spans.
    pub object: String,
    /// Where the child's range starts.
    pub offset: u64,
    /// The range's length.
    pub len: u64,
    /// 0 when the range is one leaf; else the length of the node that ends the range (what
    /// lies before it is what the node lists).
    pub head: u64,
    /// Entries below the child.
    pub records: u64,
    /// CRC-32C of the leaf, or of the node that ends the range.
    pub crc32c: u32,
}

impl Child {
    /// The child a node lists for the range `r` names, in `object`.
    pub fn of(r: &BlockRef, object: String) -> Child {
        let BlockRef { first_key, offset, len, head, records, crc32c, .. } = r.clone();
        Child { first_key, object, offset, len, head, records, crc32c }
    }

    /// This child as a reference into the manifest's objects: in the object at `object`, at
    /// `offset` there.
    pub fn at(&self, object: u32, offset: u64) -> BlockRef {
        BlockRef {
            object,
            first_key: self.first_key.clone(),
            offset,
            len: self.len,
            head: self.head,
            records: self.records,
            crc32c: self.crc32c,
        }
    }
}

/// Encodes children, in key order, as one compressed node.
pub fn encode_node(children: &[Child]) -> Result<Vec<u8>> {
    let mut cols: [Vec<u8>; 6] = Default::default();
    let mut crcs = Vec::with_capacity(4 * children.len());
    let (mut prev_key, mut prev_object, mut expected): (&str, &str, u64) = ("", "", 0);
    for (i, c) in children.iter().enumerate() {
        check_key(&c.first_key)?;
        if i > 0 && c.first_key.as_str() <= prev_key {
            return Err(Error::Unencodable {
                what: "index node",
                detail: format!("keys out of order: {prev_key:?} then {:?}", c.first_key),
            });
        }
        let shared = common_prefix(prev_key.as_bytes(), c.first_key.as_bytes());
        put_varint(&mut cols[0], shared as u64);
        put_bytes(&mut cols[0], &c.first_key.as_bytes()[shared..]);
        // Children of one object usually follow each other: store a name only when it changes.
        if i > 0 && c.object == prev_object {
            put_varint(&mut cols[1], 0);
        } else {
            put_varint(&mut cols[1], 1);
            put_bytes(&mut cols[1], c.object.as_bytes());
            expected = 0;
        }
        put_zigzag(&mut cols[2], c.offset.wrapping_sub(expected) as i64);
        expected = c.offset.wrapping_add(c.len);
        put_varint(&mut cols[3], c.len);
        put_varint(&mut cols[4], c.head);
        put_varint(&mut cols[5], c.records);
        crcs.extend_from_slice(&c.crc32c.to_le_bytes());
        (prev_key, prev_object) = (&c.first_key, &c.object);
    }
    let mut raw = Vec::with_capacity(10 + crcs.len() + cols.iter().map(Vec::len).sum::<usize>());
    put_varint(&mut raw, children.len() as u64);
    for c in &cols {
        raw.extend_from_slice(c);
    }
    raw.extend_from_slice(&crcs);
    Ok(zstd::bulk::compress(&raw, NODE_LEVEL)?)
}

/// Decodes a node written by [`encode_node`], holding at most `limit` bytes while doing so (see
/// [`MAX_NODE_DECODED`]). Every child is checked: keys strictly increasing, a head no longer
/// than its range, ranges that do not wrap around.
pub fn decode_node(node: &[u8], limit: usize) -> Result<Vec<Child>> {
    with_decompressed(node, &mut Tally { used: 0, limit }, decode_raw)
}

fn decode_raw(raw: &[u8], tally: &mut Tally) -> Result<Vec<Child>> {
    let bad = |detail: String| corrupt("index node", detail);
    let mut r = Reader::new(raw, "index node");
    let count = r.varint()?;
    // Each child takes at least 11 bytes (4 of them its checksum), which bounds the allocation.
    if count > raw.len() as u64 / 11 {
        return Err(bad(format!("{count} children cannot fit in {} bytes", raw.len())));
    }
    let count = count as usize;
    tally.add(count.saturating_mul(size_of::<Child>()), || format!("{count} children"))?;
    let mut children: Vec<Child> = Vec::with_capacity(count);
    let mut keys = KeyCursor::default();
    for i in 0..count {
        let key = keys.next(&mut r)?;
        tally.add(key.len(), || format!("the keys of its first {} children", i + 1))?;
        let key = std::str::from_utf8(key).map_err(|_| bad("key is not UTF-8".into()))?;
        if children.last().is_some_and(|p| p.first_key.as_str() >= key) {
            return Err(bad(format!("keys out of order at {key:?}")));
        }
        children.push(Child { first_key: key.to_owned(), ..Child::default() });
    }
    // A new name resets the expected offset, which needs the lengths, a column further on:
    // keep the deltas until then.
    let mut renamed = vec![false; count];
    for i in 0..count {
        match (r.varint()?, i) {
            (1, _) => {
                let name = std::str::from_utf8(r.bytes()?).map_err(|_| bad("object name is not UTF-8".into()))?;
                if name.len() > MAX_OBJECT_NAME {
                    return Err(bad(format!("an object name of {} bytes", name.len())));
                }
                children[i].object = name.to_owned();
                renamed[i] = true;
            }
            (0, 1..) => children[i].object = children[i - 1].object.clone(),
            (flag, _) => return Err(bad(format!("child {i} has object flag {flag}"))),
        }
        // Every child holds its name, repeated or not.
        tally.add(children[i].object.len(), || format!("the object names of its first {} children", i + 1))?;
    }
    let deltas = (0..count).map(|_| r.zigzag()).collect::<Result<Vec<_>>>()?;
    for c in children.iter_mut() {
        c.len = r.varint()?;
    }
    for c in children.iter_mut() {
        c.head = r.varint()?;
        if c.head > c.len {
            return Err(bad(format!("child at {:?} has a {}-byte head in {} bytes", c.first_key, c.head, c.len)));
        }
    }
    for c in children.iter_mut() {
        c.records = r.varint()?;
    }
    for c in children.iter_mut() {
        c.crc32c = u32::from_le_bytes(r.array()?);
    }
    r.finish()?;
    let mut expected = 0u64;
    for (i, c) in children.iter_mut().enumerate() {
        if renamed[i] {
            expected = 0;
        }
        // Wrapping, as the writer subtracted; the sum must not wrap.
        c.offset = expected.wrapping_add(deltas[i] as u64);
        expected = c.offset.checked_add(c.len).ok_or_else(|| bad(format!("child {i} runs past 2^64")))?;
    }
    Ok(children)
}

/// The leaves a page's node lists: `node` is the node that ends a page of `len` bytes, and
/// `crc32c` what the page's reference says it is. Every leaf must lie in the page, before its
/// node, with offsets counted from the page's start.
pub fn page_leaves(node: &[u8], len: u64, crc32c: u32, limit: usize) -> Result<Vec<Child>> {
    let crc = crc32c::crc32c(node);
    if crc != crc32c {
        return Err(corrupt("index node", format!("checksum {crc:#010x}, expected {crc32c:#010x}")));
    }
    let leaves = decode_node(node, limit)?;
    let end = len.saturating_sub(node.len() as u64);
    for l in &leaves {
        if !l.object.is_empty() || l.head != 0 || l.offset + l.len > end {
            return Err(corrupt("index node", format!("leaf {:?} is not a leaf of its page", l.first_key)));
        }
    }
    Ok(leaves)
}

/// The entries below one reference of the archive index that holds leaves only: a leaf
/// (`head` 0) or a page (its leaves, then its `head`-byte node). `span` is the whole range the
/// reference names; every checksum is checked, and each leaf against its node's reference. The
/// entries may take at most `limit` bytes in memory ([`decoded_size`]), and decoding one leaf
/// at most [`crate::MAX_BLOCK_DECODED`] besides.
pub fn decode_page(span: &[u8], head: u64, crc32c: u32, limit: usize) -> Result<Vec<Entry>> {
    let (mut entries, mut budget) = (Vec::new(), limit);
    if head == 0 {
        extend_page(&mut entries, span, (None, u64::MAX, crc32c), &mut budget)?;
        return Ok(entries);
    }
    let len = span.len() as u64;
    let node = span.get(span.len().saturating_sub(head as usize)..).filter(|_| head <= len);
    let node = node.ok_or_else(|| corrupt("index node", format!("a {head}-byte node in {len} bytes")))?;
    for leaf in page_leaves(node, len, crc32c, MAX_NODE_DECODED)? {
        let bytes = &span[leaf.offset as usize..(leaf.offset + leaf.len) as usize];
        extend_page(&mut entries, bytes, (Some(&leaf.first_key), leaf.records, leaf.crc32c), &mut budget)?;
    }
    Ok(entries)
}

/// Appends a leaf's entries to those of the leaves before it in a page: checks its bytes against
/// `crc32c`, its entries against the `first_key` and `records` its reference gives (when it
/// gives them), and that they follow the entries before. What they take in memory comes off
/// `budget`, which they may not exceed.
pub fn extend_page(
    entries: &mut Vec<Entry>,
    leaf: &[u8],
    (first_key, records, crc32c): (Option<&str>, u64, u32),
    budget: &mut usize,
) -> Result<()> {
    let crc = crc32c::crc32c(leaf);
    if crc != crc32c {
        return Err(corrupt("index block", format!("leaf checksum {crc:#010x}, expected {crc32c:#010x}")));
    }
    let block = decode_block(leaf, (*budget).min(MAX_BLOCK_DECODED))?;
    let at = || first_key.map_or_else(|| "its start".to_owned(), |k| format!("{k:?}"));
    let described = records == u64::MAX || block.len() as u64 == records;
    if !described || first_key.is_some_and(|k| block.first().map(|e| e.key.as_str()) != Some(k)) {
        return Err(corrupt("index block", format!("leaf at {} disagrees with its reference", at())));
    }
    if entries.last().zip(block.first()).is_some_and(|(a, b): (&Entry, &Entry)| a.key >= b.key) {
        return Err(corrupt("index block", format!("leaf at {} is out of key order", at())));
    }
    let size = decoded_size(&block);
    *budget = budget.checked_sub(size).ok_or_else(|| Error::TooLarge {
        what: "index page",
        limit: *budget as u64,
        detail: format!("what is left of its limit, by {size} bytes of the leaf at {}", at()),
    })?;
    entries.extend(block);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(key: &str, object: &str, offset: u64, len: u64, head: u64) -> Child {
        Child {
            first_key: key.into(),
            object: object.into(),
            offset,
            len,
            head,
            records: len / 3,
            crc32c: 0xdead_beef ^ offset as u32,
        }
    }

    #[test]
    fn nodes_round_trip() {
        let children = vec![
            child("a", "", 0, 100, 0),
            child("ab", "", 100, 90, 0),
            child("b", "index/000002.hpi", 7, 1000, 40),
            child("c", "index/000002.hpi", 1007, 10, 10),
            child("d", "index/000001.hpi", 3, 10, 0),
            child("e", "index/000002.hpi", 0, 5, 0),
        ];
        let node = encode_node(&children).unwrap();
        assert_eq!(decode_node(&node, MAX_NODE_DECODED).unwrap(), children);
        assert!(decode_node(&node, 64).is_err());
    }

    #[test]
    fn contiguous_children_cost_a_few_bytes_besides_keys_and_checksums() {
        let children: Vec<Child> =
            (0..1000).map(|i| child(&format!("key/{:06}", i * 37), "", i * 3000, 3000, 0)).collect();
        let node = encode_node(&children).unwrap();
        assert!(node.len() < 1000 * 9, "{} bytes", node.len());
    }

    #[test]
    fn forged_nodes_are_refused() {
        let mut bad = vec![child("a", "", 0, 10, 11)];
        assert!(decode_node(&encode_node(&bad).unwrap(), MAX_NODE_DECODED).is_err());
        bad[0].head = 0;
        bad[0].offset = u64::MAX;
        assert!(decode_node(&encode_node(&bad).unwrap(), MAX_NODE_DECODED).is_err());
        assert!(encode_node(&[child("b", "", 0, 1, 0), child("a", "", 1, 1, 0)]).is_err());
        assert!(decode_node(b"not zstd", MAX_NODE_DECODED).is_err());
    }

    #[test]
    fn a_name_counts_for_every_child_that_repeats_it() {
        // 40,000 children of one 200-byte object name: ~12 MiB decoded from ~100 KiB.
        let name = format!("index/{}", "n".repeat(194));
        let children: Vec<Child> = (0..40_000u64).map(|i| child(&format!("k{i:06}"), &name, i * 10, 10, 0)).collect();
        let node = encode_node(&children).unwrap();
        assert!(node.len() < 256 << 10, "{} bytes", node.len());
        assert!(matches!(decode_node(&node, MAX_NODE_DECODED), Err(Error::TooLarge { .. })));
        let long = vec![child("a", &"n".repeat(256), 0, 10, 0)];
        assert!(decode_node(&encode_node(&long).unwrap(), MAX_NODE_DECODED).is_err());
    }

    #[test]
    fn a_page_decodes_within_its_limit_or_not_at_all() {
        let entry = |i: u32| Entry {
            key: format!("key/{i:05}"),
            pack: 1,
            offset: u64::from(i) * 9,
            len: 9,
            ..Entry::default()
        };
        let mut page = Vec::new();
        let mut leaves = Vec::new();
        for l in 0..3 {
            let entries: Vec<Entry> = (l * 100..l * 100 + 100).map(entry).collect();
            let block = crate::encode_block(&entries).unwrap();
            leaves.push(Child {
                first_key: entries[0].key.clone(),
                object: String::new(),
                offset: page.len() as u64,
                len: block.len() as u64,
                head: 0,
                records: 100,
                crc32c: crc32c::crc32c(&block),
            });
            page.extend_from_slice(&block);
        }
        let node = encode_node(&leaves).unwrap();
        page.extend_from_slice(&node);
        let (head, crc) = (node.len() as u64, crc32c::crc32c(&node));
        let all = decode_page(&page, head, crc, MAX_PAGE_DECODED).unwrap();
        assert_eq!(all.len(), 300);
        // Room for two leaves' entries, not three.
        let two = decoded_size(&all[..200]);
        assert!(matches!(decode_page(&page, head, crc, two + 10), Err(Error::TooLarge { .. })));
        // A leaf whose bytes changed is refused by its checksum.
        page[3] ^= 1;
        assert!(decode_page(&page, head, crc, MAX_PAGE_DECODED).is_err());
    }
}

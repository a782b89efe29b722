//! Index nodes: the blocks above the archive index's leaves (FORMAT.md, "The archive index").
//!
//! A node lists its children in key order, each a byte range holding either a leaf (an index
//! block of entries) or a node with what lies below it. Like a leaf, it is stored column by
//! column and compressed as one zstd frame, so a reference costs a few bytes besides its first
//! key's suffix and its checksum.

use crate::bytes::{Reader, put_bytes, put_varint, put_zigzag};
use crate::entries::{Entry, KeyCursor, Tally, common_prefix, decode_block, with_decompressed};
use crate::error::{Error, Result, corrupt};
use crate::header::check_key;

/// zstd level for nodes, as for leaves: written once, read by every cold lookup.
const NODE_LEVEL: i32 = 9;

/// The most memory a node may take while it is decoded: its decompressed bytes, plus for each
/// child `size_of::<Child>()`, its first key and its object name. The packer's nodes take a few
/// hundred KiB at most (a page lists tens of leaves; a branch a few thousand pages).
pub const MAX_NODE_DECODED: usize = 8 << 20;

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
        if r.varint()? != 0 || i == 0 {
            let name = std::str::from_utf8(r.bytes()?).map_err(|_| bad("object name is not UTF-8".into()))?;
            tally.add(name.len(), || format!("the object names of its first {} children", i + 1))?;
            children[i].object = name.to_owned();
            renamed[i] = true;
        } else {
            children[i].object = children[i - 1].object.clone();
        }
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
/// reference names; every checksum is checked, and each leaf against its node's reference. A
/// page decodes to at most `limit` bytes per leaf.
pub fn decode_page(span: &[u8], head: u64, crc32c: u32, limit: usize) -> Result<Vec<Entry>> {
    let check = |bytes: &[u8], expected: u32, what: &str| {
        let crc = crc32c::crc32c(bytes);
        match crc == expected {
            true => Ok(()),
            false => Err(corrupt("index block", format!("{what} checksum {crc:#010x}, expected {expected:#010x}"))),
        }
    };
    if head == 0 {
        check(span, crc32c, "leaf")?;
        return decode_block(span, limit);
    }
    let len = span.len() as u64;
    let node = span.get(span.len().saturating_sub(head as usize)..).filter(|_| head <= len);
    let node = node.ok_or_else(|| corrupt("index node", format!("a {head}-byte node in {len} bytes")))?;
    let mut entries = Vec::new();
    for leaf in page_leaves(node, len, crc32c, MAX_NODE_DECODED)? {
        let bytes = &span[leaf.offset as usize..(leaf.offset + leaf.len) as usize];
        check(bytes, leaf.crc32c, "leaf")?;
        let block = decode_block(bytes, limit)?;
        if block.len() as u64 != leaf.records || block.first().map(|e| &e.key) != Some(&leaf.first_key) {
            return Err(corrupt("index block", format!("leaf at {:?} disagrees with its node", leaf.first_key)));
        }
        if entries.last().zip(block.first()).is_some_and(|(a, b): (&Entry, &Entry)| a.key >= b.key) {
            return Err(corrupt("index block", format!("leaf at {:?} is out of key order", leaf.first_key)));
        }
        entries.extend(block);
    }
    Ok(entries)
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
}

//! Listing in pages: a page of a listing starts where the previous one ended, at the index leaf
//! holding that key, so paging through millions of keys reads each leaf about once.

use haypack_format::Entry;

use crate::{Archive, Result};

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, in key order.
    pub entries: Vec<Entry>,
    /// Whether more entries follow the last one (pass its key as `after` to get them).
    pub more: bool,
}

impl Archive {
    /// Up to `limit` entries whose keys start with `prefix` and sort after `after`, in key
    /// order. Reads only the index leaves that can hold them.
    pub async fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        let start = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        let mut entries = Vec::new();
        // As `scan_range`: root references expanded only when the listing reaches them.
        let root = &self.manifest.index.blocks;
        for r in &root[self.manifest.block_for(start).unwrap_or(0)..] {
            if r.first_key.as_str() > start && !r.first_key.starts_with(prefix) {
                break;
            }
            let pages = self.pages_under(r).await?;
            let from_page = pages.partition_point(|p| p.first_key.as_str() <= start).saturating_sub(1);
            for page in &pages[from_page..] {
                if page.first_key.as_str() > start && !page.first_key.starts_with(prefix) {
                    return Ok(Page { entries, more: false });
                }
                let leaves = self.leaves_of(page).await?;
                let from_leaf = leaves.partition_point(|l| l.first_key.as_str() <= start).saturating_sub(1);
                for leaf in &leaves[from_leaf..] {
                    let first = leaf.first_key.as_str();
                    if first > start && !first.starts_with(prefix) {
                        return Ok(Page { entries, more: false });
                    }
                    let block = self.leaf(leaf).await?;
                    let from = block.partition_point(|e| e.key.as_str() < start);
                    for e in &block[from..] {
                        if !e.key.starts_with(prefix) {
                            return Ok(Page { entries, more: false });
                        }
                        if after.is_some_and(|a| e.key.as_str() <= a) {
                            continue;
                        }
                        if entries.len() == limit {
                            return Ok(Page { entries, more: true });
                        }
                        entries.push(e.clone());
                    }
                }
            }
        }
        Ok(Page { entries, more: false })
    }
}

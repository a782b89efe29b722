//! Checking a record's stored bytes as they stream past, without keeping them.

use haypack_format::{Dictionary, Entry};

use crate::chunked::Chunked;

/// Checks one record's stored bytes, pushed in order in chunks: its header against its index
/// entry, then its content against its length and checksum, decoded a step at a time (so within
/// [`haypack_format::Budget`], whatever the record decodes to). The first chunk must hold the
/// whole header (any chunk of 80 KiB or more does). Decoding takes CPU time in proportion to the
/// decoded length: push from a blocking thread.
pub struct RecordCheck<'a> {
    entry: &'a Entry,
    dicts: &'a [Dictionary],
    chunked: Option<Chunked>,
}

impl<'a> RecordCheck<'a> {
    /// Starts checking the record `entry` names, in an archive with the dictionaries `dicts`.
    pub fn new(entry: &'a Entry, dicts: &'a [Dictionary]) -> Self {
        RecordCheck { entry, dicts, chunked: None }
    }

    /// Checks the next chunk of the record's bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), String> {
        if let Some(c) = &mut self.chunked {
            return c.check(chunk).map_err(|e| e.to_string());
        }
        let (mut c, prefix) = Chunked::start(self.entry, self.dicts, chunk)?;
        c.check(&chunk[prefix..]).map_err(|e| e.to_string())?;
        self.chunked = Some(c);
        Ok(())
    }

    /// Ends the check: the record must be complete and its checksum must match.
    pub fn finish(self) -> Result<(), String> {
        let c = self.chunked.ok_or("the record is empty")?;
        c.finish().map_err(|e| e.to_string())
    }
}

//! Checking a record's stored bytes as they stream past, without keeping them.

use haypack_format::{ContentDecoder, Dictionary, Entry, RecordFrame};

use crate::check_header;

/// Checks one record's stored bytes, pushed in order in chunks: its header against its index
/// entry, then its content against its length and checksum. The first chunk must hold the
/// whole header (any chunk of 64 KiB or more does).
pub struct RecordCheck<'a> {
    entry: &'a Entry,
    dicts: &'a [Dictionary],
    decoder: Option<ContentDecoder<std::io::Sink>>,
}

impl<'a> RecordCheck<'a> {
    /// Starts checking the record `entry` names, in an archive with the dictionaries `dicts`.
    pub fn new(entry: &'a Entry, dicts: &'a [Dictionary]) -> Self {
        RecordCheck { entry, dicts, decoder: None }
    }

    /// Checks the next chunk of the record's bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), String> {
        if let Some(d) = &mut self.decoder {
            return d.push(chunk).map_err(|e| e.to_string());
        }
        let frame = RecordFrame::parse(chunk).map_err(|e| e.to_string())?;
        check_header(&frame, self.entry)?;
        let prefix = frame.prefix_len as usize;
        let dict = self.dicts.iter().find(|d| d.id() == frame.header.dict_id);
        let mut d = ContentDecoder::with_dictionary(frame, dict, std::io::sink()).map_err(|e| e.to_string())?;
        d.push(&chunk[prefix..]).map_err(|e| e.to_string())?;
        self.decoder = Some(d);
        Ok(())
    }

    /// Ends the check: the record must be complete and its checksum must match.
    pub fn finish(self) -> Result<(), String> {
        let d = self.decoder.ok_or("the record is empty")?;
        d.finish().map(drop).map_err(|e| e.to_string())
    }
}

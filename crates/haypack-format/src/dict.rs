//! Trained zstd dictionaries: small records compress several times better against a dictionary
//! of what records like them look like, and each still decodes alone with one range read.

use crate::error::{Result, corrupt};

/// The largest dictionary an archive may hold: the first lookup that needs it reads it whole.
pub const MAX_DICTIONARY: usize = 256 << 10;
/// The dictionary size `train` aims at: most of the gain for small records, a small first read.
pub const DEFAULT_DICTIONARY: usize = 32 << 10;

/// A zstd dictionary (zstd's own format, as `zstd --train` writes it) and the id records that
/// were compressed with it carry in their header.
#[derive(Clone, PartialEq, Eq)]
pub struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    crc32c: u32,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary").field("id", &self.id).field("len", &self.bytes.len()).finish()
    }
}

impl Dictionary {
    /// A dictionary with id `id` (not 0: that means "none"), checked to be one zstd can load.
    pub fn new(id: u32, bytes: Vec<u8>) -> Result<Self> {
        if id == 0 {
            return Err(corrupt("dictionary", "id 0 means no dictionary"));
        }
        if bytes.is_empty() || bytes.len() > MAX_DICTIONARY {
            return Err(corrupt("dictionary", format!("{} bytes; at most {MAX_DICTIONARY}", bytes.len())));
        }
        zstd::bulk::Decompressor::with_dictionary(&bytes)
            .map_err(|e| corrupt("dictionary", format!("zstd cannot load it: {e}")))?;
        let crc32c = crc32c::crc32c(&bytes);
        Ok(Dictionary { id, bytes, crc32c })
    }

    /// Trains a dictionary of at most `max_size` bytes on `samples` (whole records).
    pub fn train(id: u32, samples: &[Vec<u8>], max_size: usize) -> Result<Self> {
        let bytes = zstd::dict::from_samples(samples, max_size.min(MAX_DICTIONARY))
            .map_err(|e| corrupt("dictionary", format!("training failed: {e}")))?;
        Dictionary::new(id, bytes)
    }

    /// The id records name it by.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The dictionary itself, as `zstd -D` takes it.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// CRC-32C of the bytes: tells dictionaries with the same id in different archives apart.
    pub fn crc32c(&self) -> u32 {
        self.crc32c
    }
}

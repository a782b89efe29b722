//! haypack's on-disk format, specified byte by byte in `docs/FORMAT.md`.
//!
//! This crate is pure: it turns values into bytes and bytes into values, through byte slices and
//! `std::io::Write` only. It never opens a file or a socket, so the same code serves local packs,
//! S3 range reads and the fuzzers.
//!
//! ```
//! use haypack_format::{Compression, RecordMeta, Timestamp, decode_record, encode_record};
//!
//! let meta = RecordMeta {
//!     key: "docs/hello.txt".into(),
//!     mtime: Timestamp { secs: 1_700_000_000, nanos: 0 },
//!     mode: 0o644,
//!     content_type: Some("text/plain".into()),
//! };
//! let content = b"hello, haypack! ".repeat(64);
//! let (header, record) = encode_record(Compression::default(), meta, &content)?;
//! assert!(record.len() < content.len());
//!
//! // A record decodes on its own, and only after its checksum matched.
//! let (decoded, bytes) = decode_record(&record)?;
//! assert_eq!((decoded, bytes), (header, content));
//! # Ok::<(), haypack_format::Error>(())
//! ```

mod bytes;
mod codec;
mod decode;
mod dict;
mod entries;
mod error;
mod footer;
mod frame;
mod header;
mod manifest;
mod node;
mod segment;

pub use crate::bytes::{Reader, put_varint};
pub use crate::codec::{
    Compression, ContentEncoder, ContentSummary, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, RecordMeta, encode_record,
    encode_record_with,
};
pub use crate::decode::{Budget, RecordDecoder, decode_content, decode_record};
pub use crate::dict::{DEFAULT_DICTIONARY, Dictionary, MAX_DICTIONARY};
pub use crate::entries::{
    BlockBuilder, Entry, MAX_BLOCK_DECODED, decode_block, decoded_size, encode_block, find_in_block,
};
pub use crate::error::{Error, Result};
pub use crate::footer::{FOOTER_LEN, FOOTER_MAGIC, FOOTER_TAIL, Footer, PACK_VERSION};
pub use crate::frame::{Container, Meta, RecordFrame, StoredWriter};
pub use crate::header::{Codec, MAX_KEY_LEN, RecordHeader, Timestamp, check_key};
pub use crate::manifest::{
    BlockRef, DictRef, IndexObject, IndexRef, MANIFEST_NAME, MANIFEST_VERSION, Manifest, OLDEST_MANIFEST_VERSION,
    PackRef, ROOT_BYTES, Retired, is_object_name, pack_id_after, root_fits,
};
pub use crate::node::{
    Child, MAX_NODE_DECODED, MAX_PAGE_DECODED, decode_node, decode_page, encode_node, extend_page, page_leaves,
};
pub use crate::segment::{SEGMENT_VERSION, Segment};

//! `haypack_source::open_stream` on arbitrary bytes: detection, the tar loop (plain and
//! compressed) and the WARC parser, every record's content read to its end. Any outcome but a
//! panic, a hang or unbounded memory is fine: arbitrary bytes are mostly errors.
#![no_main]

use std::io::Read;
use std::path::Path;

use haypack_source::{Content, Item, open_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut source) = open_stream(data, Path::new("<fuzz>"), None, &Default::default()) else { return };
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(Some(item)) = source.next_item() {
        if let Item::Record(record) = item {
            assert!(!record.key.is_empty());
            if let Content::Reader { mut reader, .. } = record.content {
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            }
        }
    }
});

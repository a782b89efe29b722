//! `RecordFrame::parse` and `decode_record` on arbitrary record bytes.
#![no_main]

use haypack_format::{RecordFrame, decode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frame = RecordFrame::parse(data);
    if let Ok(frame) = &frame {
        assert!(frame.prefix_len <= data.len() as u64);
        let _ = frame.record_len();
    }
    if let Ok((header, content)) = decode_record(data) {
        // A record decodes only when its framing parses and its content is what it claims.
        let frame = frame.expect("a decoded record has a parsable frame");
        assert_eq!(frame.header, header);
        assert_eq!(frame.record_len(), data.len() as u64);
        assert_eq!(content.len() as u64, header.raw_len);
    }
});

//! `Manifest::parse` on arbitrary bytes; a manifest that parses must survive a round trip.
#![no_main]

use haypack_format::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let again = Manifest::parse(&m.to_json()).expect("a parsed manifest's JSON parses");
        assert_eq!(again, m);
    }
});

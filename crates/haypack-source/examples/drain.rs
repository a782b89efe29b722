//! Reads every record of a source (a path, or `-` for standard input) to its end and prints the
//! counts: for measuring a source's speed and memory (`/usr/bin/time -v`) on large inputs.

use std::io::Read;
use std::path::PathBuf;

use haypack_source::{Content, Item, open};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "-".into()));
    let mut source = open(&path, None, &Default::default())?;
    let (mut records, mut skipped, mut bytes) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 256 << 10];
    while let Some(item) = source.next_item()? {
        match item {
            Item::Record(record) => {
                records += 1;
                match record.content {
                    Content::Bytes(b) => bytes += b.len() as u64,
                    Content::File { len, .. } => bytes += len,
                    Content::Reader { mut reader, .. } => loop {
                        match reader.read(&mut buf)? {
                            0 => break,
                            n => bytes += n as u64,
                        }
                    },
                }
            }
            Item::Skipped(_) => skipped += 1,
        }
    }
    println!("{records} records, {skipped} skipped, {bytes} content bytes");
    Ok(())
}

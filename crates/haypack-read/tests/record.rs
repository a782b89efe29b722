//! `Archive::record` (one record for a server: header, content, gzip member, stream) and
//! `Archive::list_page`, on every codec, with damage reported as `Corrupt`.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::fs;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use haypack_format::{Compression, Container, RecordFrame};
use haypack_pack::PackOptions;
use haypack_read::{Archive, Error, Want};
use haypack_store::LocalStore;
use haypack_testkit::noise;

const CODECS: [Compression; 3] = [
    Compression { container: Container::Zstd, level: 3, compress: true },
    Compression { container: Container::Gzip, level: 6, compress: true },
    Compression { container: Container::Zstd, level: 0, compress: false },
];

async fn packed(files: &[(&str, Vec<u8>)], compression: Compression) -> (tempfile::TempDir, Arc<Archive>) {
    let src = tempfile::tempdir().unwrap();
    for (key, bytes) in files {
        let path = src.path().join(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    let dest = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dest.path()));
    let opts = PackOptions { compression, ..PackOptions::default() };
    haypack_pack::pack(src.path(), store.clone(), opts, Arc::new(())).await.unwrap();
    (dest, Arc::new(Archive::open(store).await.unwrap()))
}

fn flip_content_byte(arch: &Path, archive: &Archive, entry: &haypack_format::Entry) {
    let path = arch.join(&archive.manifest().pack(entry.pack).unwrap().name);
    let mut bytes = fs::read(&path).unwrap();
    let frame = RecordFrame::parse(&bytes[entry.offset as usize..]).unwrap();
    bytes[(entry.offset + frame.prefix_len + frame.header.stored_len / 2) as usize] ^= 0x40;
    fs::write(&path, bytes).unwrap();
}

#[tokio::test]
async fn a_record_gives_its_header_content_and_encoded_form() {
    let text = b"lorem ipsum dolor sit amet ".repeat(200);
    for compression in CODECS {
        let (_dir, archive) = packed(&[("t.txt", text.clone()), ("empty", Vec::new())], compression).await;
        let head = archive.record("t.txt", Want::Header).await.unwrap();
        assert_eq!(head.header().crc32c, crc32c::crc32c(&text));
        assert!(!head.is_whole() || head.entry().len <= 8192);
        let rec = archive.record("t.txt", Want::Content).await.unwrap();
        assert!(rec.is_whole());
        assert_eq!(rec.content().await.unwrap(), text, "{compression:?}");
        assert_eq!(head.content().await.unwrap(), text, "a header-only record reads the rest");
        match (rec.content_encoding(), rec.encoded().unwrap()) {
            (Some("gzip"), Some(member)) => {
                assert_eq!(compression.container, Container::Gzip);
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&member[..]), &mut out).unwrap();
                assert_eq!(out, text);
            }
            (Some("zstd"), Some(frame)) => {
                assert_eq!(compression.container, Container::Zstd);
                assert_eq!(zstd::decode_all(&frame[..]).unwrap(), text);
            }
            (None, None) => assert!(!compression.compress, "{compression:?}"),
            other => panic!("{compression:?}: {other:?}"),
        }
        let empty = archive.record("empty", Want::Content).await.unwrap();
        assert!(empty.content().await.unwrap().is_empty());
        assert!(matches!(archive.record("nope", Want::Header).await, Err(Error::NotFound { .. })));
    }
}

#[tokio::test]
async fn damaged_content_is_corrupt_on_every_path() {
    let text = b"lorem ipsum dolor sit amet ".repeat(200);
    for compression in CODECS {
        let (dir, archive) = packed(&[("t.txt", text.clone())], compression).await;
        let entry = archive.stat("t.txt").await.unwrap();
        flip_content_byte(dir.path(), &archive, &entry);
        let archive = Arc::new(Archive::open(archive.store().clone()).await.unwrap());
        let rec = archive.record("t.txt", Want::Content).await.unwrap();
        assert!(matches!(rec.content().await, Err(Error::Corrupt { key: Some(_), .. })), "{compression:?}");
        if compression.compress {
            assert!(matches!(rec.encoded(), Err(Error::Corrupt { .. })), "{compression:?}");
        }
        let items: Vec<_> = rec.into_stream(None).collect().await;
        assert!(matches!(items.last(), Some(Err(Error::Corrupt { .. }))), "{compression:?}");
    }
}

#[tokio::test]
async fn a_large_record_streams_in_pieces_and_ends_verified() {
    let big = noise(20 << 20, 5);
    let (_dir, archive) = packed(&[("big", big.clone())], CODECS[2]).await;
    let rec = archive.record("big", Want::Content).await.unwrap();
    assert!(!rec.is_whole());
    let pieces: Vec<_> = rec.into_stream(None).collect().await;
    // In pieces of at most one chunk each: what the stream holds at once.
    let sizes: Vec<usize> = pieces.iter().map(|p| p.as_ref().map_or(0, |b| b.len())).collect();
    assert!(sizes.len() > 1 && sizes.iter().all(|&n| n as u64 <= haypack_format::Budget::CHUNK), "{sizes:?}");
    let joined: Vec<u8> = pieces.into_iter().flat_map(|p| p.unwrap().to_vec()).collect();
    assert!(joined == big);
}

#[tokio::test]
async fn pages_start_after_the_last_key() {
    let files: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("p/{i:02}"), vec![b'x'; i])).collect();
    let mut files: Vec<(&str, Vec<u8>)> = files.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    files.push(("q", b"other".to_vec()));
    let (_dir, archive) = packed(&files, CODECS[0]).await;
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let page = archive.list_page("p/", after.as_deref(), 20).await.unwrap();
        keys.extend(page.entries.iter().map(|e| e.key.clone()));
        if !page.more {
            break;
        }
        after = keys.last().cloned();
    }
    assert_eq!(keys, (0..50).map(|i| format!("p/{i:02}")).collect::<Vec<_>>());
    let page = archive.list_page("", Some("p/49"), 10).await.unwrap();
    assert_eq!((page.entries.len(), page.entries[0].key.as_str(), page.more), (1, "q", false));
    assert!(archive.list_page("r", None, 10).await.unwrap().entries.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_cross_index_leaves() {
    let files: Vec<(String, Vec<u8>)> = (0..30_000).map(|i| (format!("k/{i:06}"), Vec::new())).collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let (_dir, archive) = packed(&files, CODECS[0]).await;
    let leaves = archive.index_parts(usize::MAX).await.unwrap().len();
    assert!(leaves > 4, "the test needs several index leaves: {leaves}");
    let (mut n, mut after, mut last) = (0, None::<String>, String::new());
    loop {
        let page = archive.list_page("k/", after.as_deref(), 7_000).await.unwrap();
        for e in &page.entries {
            assert!(e.key > last, "{} after {last}", e.key);
            last = e.key.clone();
        }
        n += page.entries.len();
        if !page.more {
            break;
        }
        after = Some(last.clone());
    }
    assert_eq!(n, 30_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_compressed_with_a_dictionary_decode_and_are_never_sent_as_plain_zstd() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..400 {
        let path = src.path().join(format!("r/{i:04}.json"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let body = format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"alpha\",\"beta\"],\"ok\":true}}\n");
        fs::write(path, body).unwrap();
    }
    let dest = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dest.path()));
    let opts = PackOptions { dictionary: haypack_pack::DictChoice::On, ..PackOptions::default() };
    haypack_pack::pack(src.path(), store.clone(), opts, Arc::new(())).await.unwrap();
    let archive = Arc::new(Archive::open(store).await.unwrap());
    let mut with_dict = 0;
    for i in (0..400).step_by(37) {
        let key = format!("r/{i:04}.json");
        let expected = fs::read(src.path().join(&key)).unwrap();
        let rec = archive.record(&key, Want::Content).await.unwrap();
        if rec.header().dict_id != 0 {
            with_dict += 1;
            assert_eq!(rec.content_encoding(), None, "a dictionary frame is useless to a client");
            assert_eq!(rec.encoded().unwrap(), None);
        }
        assert_eq!(rec.content().await.unwrap(), expected);
        let streamed: Vec<u8> =
            rec.into_stream(None).collect::<Vec<_>>().await.into_iter().flat_map(|p| p.unwrap().to_vec()).collect();
        assert_eq!(streamed, expected);
    }
    assert!(with_dict > 0, "the test needs records compressed with the dictionary");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_record_that_decodes_past_the_budget_goes_out_as_stored_checked_as_it_goes() {
    // Stores a few MiB, decodes to 24 MiB: past the budget, so its check streams.
    let mut text = Vec::with_capacity(24 << 20);
    for i in 0u64.. {
        if text.len() >= 24 << 20 {
            break;
        }
        text.extend(format!("{i} haypack\n").bytes());
    }
    let gzip = CODECS[1];
    let (dir, archive) = packed(&[("t.txt", text.clone())], gzip).await;
    let rec = archive.record("t.txt", Want::Content).await.unwrap();
    assert!(rec.is_whole() && rec.entry().len < 16 << 20, "{:?}", rec.entry());
    let pieces: Vec<_> = rec.into_encoded_stream().unwrap().unwrap().collect().await;
    assert!(pieces.len() > 1);
    let member: Vec<u8> = pieces.into_iter().flat_map(|p| p.unwrap().to_vec()).collect();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&member[..]), &mut out).unwrap();
    assert!(out == text);

    let entry = archive.stat("t.txt").await.unwrap();
    flip_content_byte(dir.path(), &archive, &entry);
    let archive = Arc::new(Archive::open(archive.store().clone()).await.unwrap());
    let rec = archive.record("t.txt", Want::Content).await.unwrap();
    let items: Vec<_> = rec.into_encoded_stream().unwrap().unwrap().collect().await;
    let sent: usize = items.iter().filter_map(|i| i.as_ref().ok()).map(|p| p.len()).sum();
    assert!(matches!(items.last(), Some(Err(Error::Corrupt { .. }))));
    assert!((sent as u64) < entry.len, "never the whole member when the check fails");
}

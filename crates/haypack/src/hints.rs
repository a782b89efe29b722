//! What the command line adds to an error: the flag or command that gets past it. The
//! libraries say what happened; only the CLI knows its own flags.

use haypack_pack::Error as PackError;
use haypack_read::Error as ReadError;
use haypack_source::Error as SourceError;

/// The hint for the first error in `e`'s chain that has one.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<PackError>() {
            pack(e)
        } else if let Some(e) = cause.downcast_ref::<ReadError>() {
            read(e)
        } else if let Some(haypack_serve::Error::Bind { .. }) = cause.downcast_ref() {
            Some("pick another address with --listen")
        } else if let Some(haypack_serve::Error::Open(e)) = cause.downcast_ref() {
            read(e)
        } else {
            None
        }
    })
}

fn pack(e: &PackError) -> Option<&'static str> {
    match e {
        PackError::Unreadable { .. } => Some(SKIP_UNREADABLE),
        PackError::ArchiveExists { .. } => Some("pass --force to replace it"),
        PackError::UncommittedSegments { .. } => Some(
            "commit them with `haypack commit DEST SEGMENT...`, or pass --force to pack over them (they are deleted)",
        ),
        PackError::Dictionary { .. } => Some("pack without --dict, or with --dict auto"),
        PackError::NoSuchKeys { .. } => Some("pass --missing-ok to delete the others"),
        PackError::DuplicateKey { .. } => Some("pass --duplicates keep-last to keep the last record of a key"),
        PackError::Vanished { .. } => Some("give `haypack gc --grace` more time than a run takes"),
        PackError::Source(e) => source(e),
        PackError::Read(e) => read(e),
        _ => None,
    }
}

fn read(e: &ReadError) -> Option<&'static str> {
    match e {
        ReadError::Corrupt { .. } => Some("run `haypack verify` on the archive to find every damaged record"),
        _ => None,
    }
}

fn source(e: &SourceError) -> Option<&'static str> {
    match e {
        SourceError::Unreadable { .. } | SourceError::NonUtf8Name { .. } | SourceError::NonUtf8Member { .. } => {
            Some(SKIP_UNREADABLE)
        }
        SourceError::UnknownFormat { .. } => Some("if it is one, name the format with --format"),
        _ => None,
    }
}

const SKIP_UNREADABLE: &str = "pass --skip-unreadable to skip such entries and go on";

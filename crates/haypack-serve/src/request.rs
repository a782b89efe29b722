//! What a request asks for, read from its URL and headers: the key, the byte range, whether a
//! cached copy is still good, whether gzip may be sent. Pure functions, tested here.

use std::time::SystemTime;

use hyper::HeaderMap;
use hyper::header::{ACCEPT_ENCODING, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use percent_encoding::percent_decode_str;

/// The key a URL path names, or why it names none. The path is percent-decoded exactly once,
/// and anything that could mean "elsewhere" to some layer (an encoded slash, `..`, an absolute
/// path, a backslash, NUL) is refused rather than interpreted: keys are names in an index,
/// never host paths, and a refused request costs nothing to look up.
pub fn key_of(path: &str) -> Result<String, &'static str> {
    let rest = path.strip_prefix('/').ok_or("the path does not start with /")?;
    // Decoding `%2F` would turn one segment into two after the checks below saw one.
    let lower = rest.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err("the path has an encoded slash or backslash");
    }
    let key = percent_decode_str(rest).decode_utf8().map_err(|_| "the path is not UTF-8 once percent-decoded")?;
    if key.contains('\0') {
        return Err("the path has a NUL byte");
    }
    if key.contains('\\') {
        return Err("the path has a backslash");
    }
    if key.starts_with('/') {
        return Err("the path is absolute (it starts with //)");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("the path has an empty segment"),
            "." | ".." => return Err("the path has a . or .. segment"),
            _ => {}
        }
    }
    haypack_format::check_key(&key).map_err(|_| "the path is longer than any key")?;
    Ok(key.into_owned())
}

/// The `name=value` pairs of a query string, percent-decoded (`+` is a space).
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, &'static str> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "the query is not UTF-8 once percent-decoded")
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Whether the client takes `Content-Encoding: coding` (`gzip` or `zstd`): the coding (or `*`)
/// listed with a non-zero weight; an explicit `coding;q=0` wins over `*`.
pub fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    let (mut named, mut any) = (None, None);
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let listed = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(|q| q.trim().parse::<f32>().unwrap_or(0.0)))
                .unwrap_or(1.0);
            if listed == coding || (coding == "gzip" && listed == "x-gzip") {
                named = Some(q > 0.0);
            } else if listed == "*" {
                any = Some(q > 0.0);
            }
        }
    }
    named.or(any).unwrap_or(false)
}

/// Whether a cached copy the client holds is current, so the answer is 304. `etags` are the
/// tags of every representation of the record (with and without gzip). As RFC 9110 §13.2.2
/// orders it, `If-None-Match` decides when present and `If-Modified-Since` only otherwise.
pub fn not_modified(headers: &HeaderMap, etags: &[&str], modified: Option<SystemTime>) -> bool {
    if let Some(inm) = headers.get(IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else { return false };
        // Weak comparison: W/"x" matches "x".
        return inm.split(',').map(str::trim).any(|t| t == "*" || etags.contains(&t.trim_start_matches("W/")));
    }
    let since =
        headers.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()).and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        // HTTP dates have whole seconds; a record changed within the second it was fetched in
        // cannot be told apart, as with any file server.
        (Some(since), Some(modified)) => truncate_to_secs(modified) <= since,
        _ => false,
    }
}

fn truncate_to_secs(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// What a `Range` header asks of a content of some length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// All of it: no `Range`, one the server may ignore (several ranges, another unit, bad
    /// syntax), or an `If-Range` that no longer holds.
    Full,
    /// Bytes `start..end` (end exclusive, never empty).
    Part(u64, u64),
    /// A range that starts at or past the end: 416.
    Unsatisfiable,
}

/// Reads `Range` (and `If-Range`) for a content of `total` bytes whose strong ETag is `etag`
/// and whose `Last-Modified` is `last_modified`. One range only: several ranges would need a
/// multipart body, and RFC 9110 lets a server answer them with the whole content instead.
pub fn range(headers: &HeaderMap, total: u64, etag: &str, last_modified: Option<&str>) -> Ranged {
    let Some(spec) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else { return Ranged::Full };
    if let Some(cond) = headers.get(IF_RANGE) {
        let cond = cond.to_str().unwrap_or("");
        let holds = if cond.starts_with('"') { cond == etag } else { Some(cond) == last_modified };
        if !holds {
            return Ranged::Full;
        }
    }
    let Some(spec) = spec.trim().strip_prefix("bytes=") else { return Ranged::Full };
    if spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.split_once('-') else { return Ranged::Full };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Ok(n) = last.parse::<u64>() else { return Ranged::Full };
        if n == 0 || total == 0 {
            return Ranged::Unsatisfiable;
        }
        return Ranged::Part(total - n.min(total), total);
    }
    let Ok(start) = first.parse::<u64>() else { return Ranged::Full };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return Ranged::Full,
        }
    };
    if start >= total {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part(start, end.min(total - 1) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(hyper::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn paths_become_keys_only_when_they_cannot_leave_the_archive() {
        assert_eq!(key_of("/a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(key_of("/with%20space/%C3%A9.txt").unwrap(), "with space/é.txt");
        assert_eq!(key_of("/%252e%252e").unwrap(), "%2e%2e", "decoded once, not twice");
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a/%2E%2E/b",
            "/a%2fb",
            "/a%2F..%2Fb",
            "//etc/passwd",
            "/%2Fetc/passwd",
            "/a//b",
            "/a/",
            "/a\\b",
            "/a%5cb",
            "/a%00b",
            "/./a",
            "/",
            "/%ff",
            "relative",
        ] {
            assert!(key_of(bad).is_err(), "{bad} must be refused");
        }
        assert!(key_of(&format!("/{}", "k".repeat(5000))).is_err());
    }

    #[test]
    fn queries_decode_once() {
        let q = query_pairs("prefix=a%2Fb&after=x+y&limit=5&flag").unwrap();
        assert_eq!(
            q,
            [("prefix", "a/b"), ("after", "x y"), ("limit", "5"), ("flag", "")].map(|(a, b)| (a.into(), b.into()))
        );
    }

    #[test]
    fn a_coding_is_sent_only_to_clients_that_take_it() {
        let gzip = |v: &str| accepts(&headers(&[(ACCEPT_ENCODING, v)]), "gzip");
        assert!(gzip("gzip, deflate, br"));
        assert!(gzip("br;q=1.0, gzip;q=0.8"));
        assert!(gzip("x-gzip"));
        assert!(gzip("*"));
        assert!(!gzip("gzip;q=0"));
        assert!(!gzip("*, gzip;q=0"));
        assert!(!gzip("identity"));
        assert!(!accepts(&HeaderMap::new(), "gzip"));
        let zstd = |v: &str| accepts(&headers(&[(ACCEPT_ENCODING, v)]), "zstd");
        assert!(zstd("gzip, deflate, br, zstd"));
        assert!(!zstd("gzip, deflate, br"));
        assert!(!zstd("zstd;q=0, *"));
    }

    #[test]
    fn conditionals_follow_rfc_9110_precedence() {
        let tags = ["\"abc-1\"", "\"abc-1-gz\""];
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500);
        let date = httpdate::fmt_http_date(t);
        assert!(not_modified(&headers(&[(IF_NONE_MATCH, "\"abc-1\"")]), &tags, Some(t)));
        assert!(not_modified(&headers(&[(IF_NONE_MATCH, "\"x\", W/\"abc-1-gz\"")]), &tags, Some(t)));
        assert!(not_modified(&headers(&[(IF_NONE_MATCH, "*")]), &tags, Some(t)));
        assert!(!not_modified(&headers(&[(IF_NONE_MATCH, "\"old\"")]), &tags, Some(t)));
        assert!(not_modified(&headers(&[(IF_MODIFIED_SINCE, &date)]), &tags, Some(t)));
        let earlier = httpdate::fmt_http_date(t - std::time::Duration::from_secs(1));
        assert!(!not_modified(&headers(&[(IF_MODIFIED_SINCE, &earlier)]), &tags, Some(t)));
        // If-None-Match decides alone when present.
        assert!(!not_modified(&headers(&[(IF_NONE_MATCH, "\"old\""), (IF_MODIFIED_SINCE, &date)]), &tags, Some(t)));
        assert!(!not_modified(&headers(&[(IF_MODIFIED_SINCE, "yesterday")]), &tags, Some(t)));
    }

    #[test]
    fn ranges() {
        let r = |spec: &str, total| range(&headers(&[(RANGE, spec)]), total, "\"e\"", Some("date"));
        assert_eq!(r("bytes=0-9", 100), Ranged::Part(0, 10));
        assert_eq!(r("bytes=90-", 100), Ranged::Part(90, 100));
        assert_eq!(r("bytes=90-1000", 100), Ranged::Part(90, 100));
        assert_eq!(r("bytes=-10", 100), Ranged::Part(90, 100));
        assert_eq!(r("bytes=-1000", 100), Ranged::Part(0, 100));
        assert_eq!(r("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=5-1", 100), Ranged::Full);
        assert_eq!(r("bytes=0-1,5-6", 100), Ranged::Full);
        assert_eq!(r("items=0-1", 100), Ranged::Full);
        assert_eq!(r("bytes=x-1", 100), Ranged::Full);
        assert_eq!(range(&HeaderMap::new(), 100, "\"e\"", None), Ranged::Full);
        let cond = |c: &str| range(&headers(&[(RANGE, "bytes=0-0"), (IF_RANGE, c)]), 100, "\"e\"", Some("date"));
        assert_eq!(cond("\"e\""), Ranged::Part(0, 1));
        assert_eq!(cond("\"old\""), Ranged::Full);
        assert_eq!(cond("date"), Ranged::Part(0, 1));
        assert_eq!(cond("other date"), Ranged::Full);
    }
}

//! Member names to keys, and times to timestamps: the rules every archive source shares.

use std::path::Path;

use haypack_format::{MAX_KEY_LEN, Timestamp};

use crate::{Error, Skipped};

/// What a member name turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name {
    /// A key.
    Key(String),
    /// A directory (a trailing `/`, or nothing but `.` components): not recorded.
    Dir,
}

/// Why a member name cannot be a key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NameProblem {
    NotUtf8,
    Unsafe(&'static str),
    TooLong(usize),
}

/// The key of a member named `raw`, as a user would name the file: `./a/b` and `a/b` are both
/// `a/b` (so `tar -cf - -C DIR .` gives the keys that packing DIR gives), `.` components are
/// dropped, and a name that could escape the tree (absolute, `..`, an empty component) is
/// refused rather than cleaned, since cleaning could silently merge two members.
pub(crate) fn member_key(raw: &[u8]) -> Result<Name, NameProblem> {
    let name = std::str::from_utf8(raw).map_err(|_| NameProblem::NotUtf8)?;
    if name.starts_with('/') {
        return Err(NameProblem::Unsafe("is an absolute path"));
    }
    let (name, dir) = match name.strip_suffix('/') {
        Some(n) => (n, true),
        None => (name, false),
    };
    let mut key = String::with_capacity(name.len());
    for part in name.split('/') {
        match part {
            "." => continue,
            ".." => return Err(NameProblem::Unsafe("has a `..` component")),
            "" => return Err(NameProblem::Unsafe("has an empty component")),
            _ => {}
        }
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(part);
    }
    if dir || key.is_empty() {
        return Ok(Name::Dir);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(NameProblem::TooLong(key.len()));
    }
    Ok(Name::Key(key))
}

/// The error (or, for a name that is merely not UTF-8 with `skip` on, the entry to report as
/// skipped) for a member whose name failed [`member_key`].
pub(crate) fn name_problem(
    problem: NameProblem,
    archive: &Path,
    raw: &[u8],
    offset: u64,
    skip: bool,
) -> crate::Result<Skipped> {
    let member = String::from_utf8_lossy(raw).into_owned();
    Err(match problem {
        NameProblem::NotUtf8 if skip => {
            return Ok(Skipped {
                path: archive.join(&member),
                reason: "name is not UTF-8, so it cannot become a key".into(),
            });
        }
        NameProblem::NotUtf8 => Error::NonUtf8Member { archive: archive.to_owned(), member, offset },
        NameProblem::Unsafe(why) => Error::BadMemberName { archive: archive.to_owned(), member, offset, why },
        NameProblem::TooLong(len) => Error::KeyTooLong { path: archive.join(member), len, max: MAX_KEY_LEN },
    })
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d` (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A UTC calendar time as a timestamp.
pub(crate) fn civil_time(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> Timestamp {
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    Timestamp { secs, nanos }
}

/// An ISO 8601 UTC time as WARC-Date writes it: `2024-05-06T07:08:09Z`, optionally with a
/// fraction of a second (WARC 1.1) or fewer fields (W3C-DTF allows `2024-05-06`).
pub(crate) fn parse_iso8601(s: &str) -> Option<Timestamp> {
    let s = s.trim().strip_suffix('Z').unwrap_or(s.trim());
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: u32 = d.next().map_or(Some(1), |v| v.parse().ok())?;
    let day: u32 = d.next().map_or(Some(1), |v| v.parse().ok())?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').filter(|p| !p.is_empty());
    let h: u32 = t.next().map_or(Some(0), |v| v.parse().ok())?;
    let mi: u32 = t.next().map_or(Some(0), |v| v.parse().ok())?;
    let sec: u32 = t.next().map_or(Some(0), |v| v.parse().ok())?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? * 10u32.pow(8 - i as u32);
    }
    Some(civil_time(y, mo, day, h, mi, sec, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_keys_as_a_user_would_name_them() {
        let key = |s: &str| member_key(s.as_bytes());
        assert_eq!(key("./a/b.txt"), Ok(Name::Key("a/b.txt".into())));
        assert_eq!(key("a/./b"), Ok(Name::Key("a/b".into())));
        assert_eq!(key("./"), Ok(Name::Dir));
        assert_eq!(key("."), Ok(Name::Dir));
        assert_eq!(key("a/"), Ok(Name::Dir));
        assert_eq!(key("/etc/passwd"), Err(NameProblem::Unsafe("is an absolute path")));
        assert_eq!(key("a/../../b"), Err(NameProblem::Unsafe("has a `..` component")));
        assert_eq!(key("a//b"), Err(NameProblem::Unsafe("has an empty component")));
        assert_eq!(member_key(b"a/\xff"), Err(NameProblem::NotUtf8));
        assert_eq!(key(&"x".repeat(MAX_KEY_LEN + 1)), Err(NameProblem::TooLong(MAX_KEY_LEN + 1)));
    }

    #[test]
    fn warc_dates_parse_to_the_nanosecond() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(Timestamp { secs: 0, nanos: 0 }));
        assert_eq!(parse_iso8601("2024-02-29T12:34:56Z"), Some(Timestamp { secs: 1_709_210_096, nanos: 0 }));
        assert_eq!(
            parse_iso8601("2024-02-29T12:34:56.25Z"),
            Some(Timestamp { secs: 1_709_210_096, nanos: 250_000_000 })
        );
        assert_eq!(parse_iso8601("1969-12-31T23:59:59Z"), Some(Timestamp { secs: -1, nanos: 0 }));
        assert_eq!(parse_iso8601("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601("yesterday"), None);
    }
}

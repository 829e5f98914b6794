//! What an earlier run left in the output directory: a `<path>.log` that a crash, a kill or a
//! plain restart did not archive.
//!
//! Nothing of it is ever truncated. A torn last line (a record cut mid-write by a crash, no
//! final newline) is ended first, so the next record starts on a line of its own and every
//! whole record stays parseable. With rotation the file is then archived as zeekctl archives a
//! crashed node's logs at start: into the usual `DIR/<date>/<path>.<open>-<close>.log` name,
//! with the open time from its `#open` header or first record and the close time from its
//! `#close` footer or last record (the file's mtime when neither can be read). Without
//! rotation the new run appends, unless the file is in the other format (TSV and JSON are
//! never mixed in one file): then it is archived the same way.

use crate::output::Format;
use chrono::{DateTime, NaiveDateTime};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// How much of each end of a file is read to find its times.
const PROBE: u64 = 64 * 1024;

/// Ends a torn last line of `path` with a newline. Returns the file's length afterwards, 0
/// when there is no file.
pub(crate) fn end_torn_line(path: &Path) -> std::io::Result<u64> {
    let mut f = match OpenOptions::new().read(true).append(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    f.write_all(b"\n")?;
    Ok(len + 1)
}

/// The format of the log in `path`, from its first byte (`#`: TSV's header, `{`: JSON);
/// `None` when it is neither.
pub(crate) fn format_of(path: &Path) -> std::io::Result<Option<Format>> {
    let mut first = [0u8; 1];
    let n = File::open(path)?.read(&mut first)?;
    Ok(match (n, first[0]) {
        (1, b'#') => Some(Format::Tsv),
        (1, b'{') => Some(Format::Json),
        _ => None,
    })
}

/// When the log in `path` was opened and closed, in ns since the epoch.
pub(crate) fn span(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
    let len = meta.len();
    let mut head = Vec::new();
    (&mut f).take(PROBE).read_to_end(&mut head)?;
    // A TSV row has as many columns as `#fields` names; a torn one has fewer.
    let columns = head
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"#fields\t"))
        .map(|f| f.split(|&b| b == b'\t').count());
    let open = head
        .split(|&b| b == b'\n')
        .find_map(|l| header_time(l, b"#open\t").or_else(|| record_ts(l, columns)));
    let tail_start = len.saturating_sub(PROBE);
    let mut tail = Vec::new();
    f.seek(SeekFrom::Start(tail_start))?;
    f.take(PROBE).read_to_end(&mut tail)?;
    let mut lines: Vec<&[u8]> = tail.split(|&b| b == b'\n').collect();
    if tail_start > 0 && !lines.is_empty() {
        // The first line of the tail may start mid-line.
        lines.remove(0);
    }
    let close = lines
        .iter()
        .rev()
        .find_map(|l| header_time(l, b"#close\t").or_else(|| record_ts(l, columns)));
    let open = open.or(close).unwrap_or(mtime);
    let close = close.unwrap_or(mtime).max(open);
    Ok((open, close))
}

/// The date of a `#open` or `#close` line (`YYYY-MM-DD-HH-MM-SS`, UTC).
fn header_time(line: &[u8], key: &[u8]) -> Option<u64> {
    let rest = std::str::from_utf8(line.strip_prefix(key)?).ok()?;
    let t = NaiveDateTime::parse_from_str(rest.trim(), "%Y-%m-%d-%H-%M-%S").ok()?;
    u64::try_from(t.and_utc().timestamp())
        .ok()?
        .checked_mul(1_000_000_000)
}

/// The `ts` of one record: the first TSV column, or JSON's `"ts"` (epoch seconds or an ISO
/// 8601 string). `None` for anything else (comment lines, a torn fragment). `columns`: how
/// many columns a TSV row has, when the header says.
fn record_ts(line: &[u8], columns: Option<usize>) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?;
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    if line.starts_with('{') {
        if !line.ends_with('}') {
            return None;
        }
        let at = line.find("\"ts\":")? + 5;
        let v = line[at..].trim_start();
        if let Some(s) = v.strip_prefix('"') {
            let t = DateTime::parse_from_rfc3339(&s[..s.find('"')?]).ok()?;
            return u64::try_from(t.timestamp_nanos_opt()?).ok();
        }
        let end = v.find([',', '}']).unwrap_or(v.len());
        return secs_to_ns(&v[..end]);
    }
    let n = line.split('\t').count();
    if columns.map_or(n < 2, |c| c != n) {
        return None;
    }
    secs_to_ns(line.split('\t').next()?)
}

/// `SECONDS[.FRACTION]` to ns, exactly (no float rounding: archive names are to the second).
fn secs_to_ns(s: &str) -> Option<u64> {
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !(frac.is_empty() || digits(frac)) {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let mut ns = 0u64;
    for (i, b) in frac.bytes().take(9).enumerate() {
        ns += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    (secs > 0).then_some(secs.checked_mul(1_000_000_000)?.checked_add(ns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_torn_line_is_ended_and_a_whole_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.log");
        assert_eq!(end_torn_line(&p).unwrap(), 0);
        std::fs::write(&p, b"{\"ts\":1}\n{\"ts\":2,\"ui").unwrap();
        assert_eq!(end_torn_line(&p).unwrap(), 21);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"ts\":1}\n{\"ts\":2,\"ui\n");
        assert_eq!(end_torn_line(&p).unwrap(), 21);
        assert_eq!(std::fs::read(&p).unwrap().len(), 21);
    }

    #[test]
    fn tsv_span_comes_from_open_and_close_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.log");
        std::fs::write(
            &p,
            "#separator \\x09\n#path\tconn\n#open\t2011-03-18-19-06-07\n#fields\tts\n\
             1300475168.5\n1300475200.0\n#close\t2011-03-18-20-00-00\n",
        )
        .unwrap();
        assert_eq!(span(&p).unwrap(), (1_300_475_167 * S, 1_300_478_400 * S));
    }

    #[test]
    fn a_crashed_tsv_or_json_log_spans_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.log");
        // No #close (killed), a torn fragment last: the last whole record closes it.
        std::fs::write(
            &p,
            "#open\t2011-03-18-19-06-07\n#fields\tts\tuid\n1300475168.5\tx\n1300475200.25\ty\n1300475300\n",
        )
        .unwrap();
        assert_eq!(
            span(&p).unwrap(),
            (1_300_475_167 * S, 1_300_475_200 * S + 250_000_000)
        );
        std::fs::write(
            &p,
            "{\"ts\":1300475168.5,\"uid\":\"C1\"}\n{\"ts\":\"2011-03-18T19:10:00.000000Z\",\"uid\":\"C2\"}\n{\"ts\":13",
        )
        .unwrap();
        assert_eq!(
            span(&p).unwrap(),
            (1_300_475_168 * S + 500_000_000, 1_300_475_400 * S)
        );
    }

    #[test]
    fn nothing_readable_falls_back_on_the_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.log");
        std::fs::write(&p, "garbage\n").unwrap();
        let (o, c) = span(&p).unwrap();
        assert_eq!(o, c);
        assert!(o > 1_600_000_000 * S);
    }
}

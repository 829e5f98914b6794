//! What the Zeek TSV and JSON encoders share: Zeek's notion of time (microsecond `double`s)
//! and the number and date formatting both writers need.
//!
//! Zeek keeps times as `double` seconds built from the capture's microsecond timestamps. The
//! encoders reproduce that (truncating nanosecond captures to microseconds, as libpcap does
//! for Zeek) so that our lines match Zeek's byte for byte, including the floating-point noise
//! in Zeek's JSON `duration`.

use std::io::Write;

/// A packet time as Zeek holds it: whole seconds and microseconds (nanoseconds truncated).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ZeekTime {
    pub secs: u64,
    pub micros: u32,
}

impl ZeekTime {
    pub fn from_ns(ns: u64) -> ZeekTime {
        ZeekTime {
            secs: ns / 1_000_000_000,
            micros: ((ns % 1_000_000_000) / 1_000) as u32,
        }
    }

    /// Microseconds since the epoch.
    pub fn total_micros(self) -> u64 {
        self.secs * 1_000_000 + u64::from(self.micros)
    }

    /// The `double` Zeek computes for this time (`tv_sec + tv_usec / 1e6`).
    pub fn as_f64(self) -> f64 {
        self.secs as f64 + f64::from(self.micros) / 1e6
    }
}

/// Whether Zeek sees a non-zero interval between two packet times. Zeek's intervals are
/// differences of microsecond timestamps, so a sub-microsecond difference from a nanosecond
/// capture is zero to Zeek.
pub(crate) fn micros_differ(start_ns: u64, end_ns: u64) -> bool {
    ZeekTime::from_ns(end_ns).total_micros() > ZeekTime::from_ns(start_ns).total_micros()
}

/// Writes `secs.micros` with exactly six decimals, the way Zeek's `%.6f` renders a time whose
/// fraction came from whole microseconds.
pub(crate) fn write_fixed6(out: &mut Vec<u8>, secs: u64, micros: u32) {
    write_u64(out, secs);
    out.push(b'.');
    write_padded(out, u64::from(micros), 6);
}

/// Writes an unsigned integer in decimal (the `fmt` machinery costs more than the rest of a
/// record's encoding, so the writer's hot path avoids it).
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Writes a signed integer in decimal.
#[inline]
pub(crate) fn write_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Writes `v` with leading zeros to `width` digits.
pub(crate) fn write_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut b = itoa::Buffer::new();
    let digits = b.format(v).as_bytes();
    for _ in digits.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(digits);
}

/// Writes an address as Zeek does: dotted quad, or RFC 5952 IPv6 (what `Display` gives).
#[inline]
pub(crate) fn write_addr(out: &mut Vec<u8>, a: std::net::IpAddr) {
    match a {
        std::net::IpAddr::V4(v4) => {
            let [x, y, z, w] = v4.octets();
            write_u64(out, u64::from(x));
            out.push(b'.');
            write_u64(out, u64::from(y));
            out.push(b'.');
            write_u64(out, u64::from(z));
            out.push(b'.');
            write_u64(out, u64::from(w));
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Writes `#open`/`#close` dates: `YYYY-MM-DD-HH-MM-SS` in UTC (Zeek's format, run with
/// `TZ=UTC` as the references are).
pub(crate) fn write_log_date(out: &mut Vec<u8>, ts_ns: u64) {
    let c = Civil::from_ns(ts_ns);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
}

/// A UTC calendar time, to the second.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    pub fn from_ns(ts_ns: u64) -> Civil {
        let secs = ts_ns / 1_000_000_000;
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = (secs % 86_400) as u32;
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: (rem / 60) % 60,
            second: rem % 60,
        }
    }
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month, day), using the
/// well-known era arithmetic (400-year cycles of 146097 days) so no table is needed.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(ts_s: u64) -> String {
        let mut v = Vec::new();
        write_log_date(&mut v, ts_s * 1_000_000_000);
        String::from_utf8(v).expect("log date is ASCII")
    }

    #[test]
    fn log_dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01-00-00-00");
        assert_eq!(date(951_782_400), "2000-02-29-00-00-00");
        assert_eq!(date(1_300_475_167), "2011-03-18-19-06-07");
        assert_eq!(date(4_102_444_799), "2099-12-31-23-59-59");
    }

    #[test]
    fn nanosecond_times_truncate_to_microseconds() {
        let t = ZeekTime::from_ns(1_300_475_167_096_535_999);
        assert_eq!(
            t,
            ZeekTime {
                secs: 1_300_475_167,
                micros: 96_535
            }
        );
        let mut v = Vec::new();
        write_fixed6(&mut v, t.secs, t.micros);
        assert_eq!(v, b"1300475167.096535");
        assert!(!micros_differ(1_000_000_100, 1_000_000_900));
        let mut v = Vec::new();
        write_addr(&mut v, "198.18.0.255".parse().unwrap());
        v.push(b' ');
        write_addr(&mut v, "fd00::1:0:0:2".parse().unwrap());
        v.push(b' ');
        write_i64(&mut v, -42);
        assert_eq!(v, b"198.18.0.255 fd00::1:0:0:2 -42");
        assert!(micros_differ(1_000_000_100, 1_000_001_000));
    }
}

//! Zeek's tab-separated ASCII log format (`LogAscii::use_json=F`, the default).
//!
//! The header is Zeek 8's, byte for byte, with our `community_id` column appended. Values are
//! rendered as Zeek's ASCII formatter renders them: `-` for an unset field, `(empty)` for an
//! empty string or set, `T`/`F` for booleans, `%.6f` for times and intervals, and strings with
//! separators and non-printable bytes escaped as `\xNN`.

use super::record::ConnRecord;
use super::zeek::{span, write_fixed6, write_log_date, CONN_FIELDS};
use super::Encoder;
use std::io::Write;

const SEP: u8 = b'\t';
const SET_SEP: u8 = b',';
const UNSET: &[u8] = b"-";
const EMPTY: &[u8] = b"(empty)";

/// Encodes `conn.log` records as Zeek TSV.
#[derive(Default, Debug)]
pub struct TsvEncoder;

impl Encoder for TsvEncoder {
    fn header(&mut self, path: &str, open_ts_ns: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"#separator \\x09\n");
        out.extend_from_slice(b"#set_separator\t,\n");
        out.extend_from_slice(b"#empty_field\t(empty)\n");
        out.extend_from_slice(b"#unset_field\t-\n");
        out.extend_from_slice(b"#path\t");
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b"\n#open\t");
        write_log_date(out, open_ts_ns);
        out.extend_from_slice(b"\n#fields");
        for (name, _) in CONN_FIELDS {
            out.push(SEP);
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(b"\n#types");
        for (_, ty) in CONN_FIELDS {
            out.push(SEP);
            out.extend_from_slice(ty.as_bytes());
        }
        out.push(b'\n');
    }

    fn conn(&mut self, rec: &ConnRecord, out: &mut Vec<u8>) {
        let (start, end, has_duration) = span(rec);
        // Writing into a Vec cannot fail, so the `write!` results below are ignored.
        write_fixed6(out, start.secs, start.micros);
        out.push(SEP);
        write_string(out, rec.uid.as_str().as_bytes(), false);
        let _ = write!(
            out,
            "\t{}\t{}\t{}\t{}\t{}\t",
            rec.orig_h,
            rec.orig_p,
            rec.resp_h,
            rec.resp_p,
            rec.proto.as_str()
        );
        if rec.service.is_empty() {
            out.extend_from_slice(UNSET);
        } else {
            // Zeek 8 logs `service` as one string with the names joined by commas.
            for (i, s) in rec.service.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(s.as_str().as_bytes());
            }
        }
        out.push(SEP);
        if has_duration {
            let d = end.total_micros() - start.total_micros();
            write_fixed6(out, d / 1_000_000, (d % 1_000_000) as u32);
            let _ = write!(out, "\t{}\t{}\t", rec.orig_bytes, rec.resp_bytes);
        } else {
            out.extend_from_slice(b"-\t-\t-\t");
        }
        out.extend_from_slice(rec.conn_state.as_str().as_bytes());
        out.push(SEP);
        write_bool(out, rec.local_orig);
        out.push(SEP);
        write_bool(out, rec.local_resp);
        let _ = write!(out, "\t{}\t", rec.missed_bytes);
        if rec.history.is_empty() {
            out.extend_from_slice(UNSET);
        } else {
            write_string(out, rec.history.as_str().as_bytes(), false);
        }
        let _ = write!(
            out,
            "\t{}\t{}\t{}\t{}\t",
            rec.orig_pkts, rec.orig_ip_bytes, rec.resp_pkts, rec.resp_ip_bytes
        );
        let mut parents = rec.tunnel_parents.iter().flatten().peekable();
        if parents.peek().is_none() {
            out.extend_from_slice(UNSET);
        } else {
            for (i, uid) in parents.enumerate() {
                if i > 0 {
                    out.push(SET_SEP);
                }
                write_string(out, uid.as_str().as_bytes(), true);
            }
        }
        let _ = write!(out, "\t{}\t", rec.ip_proto);
        let cid = rec.community_id.as_str();
        if cid.is_empty() {
            out.extend_from_slice(UNSET);
        } else {
            write_string(out, cid.as_bytes(), false);
        }
        out.push(b'\n');
    }

    fn footer(&mut self, close_ts_ns: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"#close\t");
        write_log_date(out, close_ts_ns);
        out.push(b'\n');
    }
}

fn write_bool(out: &mut Vec<u8>, v: Option<bool>) {
    out.extend_from_slice(match v {
        Some(true) => b"T",
        Some(false) => b"F",
        None => UNSET,
    });
}

/// Writes a string value as Zeek's ASCII writer does. A value that reads exactly like the unset
/// or empty marker gets its first byte escaped so that a reader can tell them apart; bytes that
/// are not printable ASCII, the backslash and the field separator become `\xNN`, and inside a
/// set the set separator does too.
fn write_string(out: &mut Vec<u8>, s: &[u8], in_set: bool) {
    if s.is_empty() {
        out.extend_from_slice(EMPTY);
        return;
    }
    let reserved = s == UNSET || s == EMPTY;
    for (i, &b) in s.iter().enumerate() {
        let escape = (i == 0 && reserved)
            || !(0x20..0x7f).contains(&b)
            || b == b'\\'
            || (in_set && b == SET_SEP);
        if escape {
            write_hex_escape(out, b);
        } else {
            out.push(b);
        }
    }
}

fn write_hex_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 15)],
    ]);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::output::record::{
        CommunityId, ConnState, History, Service, ServiceList, Transport, Uid,
    };

    /// The first row of the Zeek reference `ssh-basic/conn.log`, as a record, with a chosen
    /// `ts` (the reference masks it).
    pub(crate) fn ssh_basic_row() -> ConnRecord {
        let mut service = ServiceList::default();
        service.push(Service::Ssh);
        let mut history = History::default();
        for &c in b"ShAdDaFf" {
            history.push(c);
        }
        ConnRecord {
            ts_ns: 1_324_071_333_493_287_000,
            uid: Uid::from_bits(0x1234_5678_9abc_def0, 42),
            orig_h: "192.168.1.79".parse().unwrap(),
            orig_p: 51880,
            resp_h: "131.159.21.1".parse().unwrap(),
            resp_p: 22,
            proto: Transport::Tcp,
            service,
            duration_ns: 6_159_326_000,
            orig_bytes: 2669,
            resp_bytes: 2501,
            conn_state: ConnState::SF,
            local_orig: Some(true),
            local_resp: Some(false),
            missed_bytes: 0,
            history,
            orig_pkts: 25,
            orig_ip_bytes: 3981,
            resp_pkts: 20,
            resp_ip_bytes: 3549,
            tunnel_parents: [None, None],
            ip_proto: 6,
            community_id: CommunityId::default(),
        }
    }

    fn reference_log() -> Option<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/conformance/zeek/ssh-basic/conn.log"
        );
        match std::fs::read_to_string(path) {
            Ok(s) => Some(s),
            Err(e) => {
                println!("skipping: reference log {path} not readable: {e}");
                None
            }
        }
    }

    fn encode(rec: &ConnRecord) -> String {
        let mut out = Vec::new();
        TsvEncoder.conn(rec, &mut out);
        String::from_utf8(out).expect("TSV output is UTF-8")
    }

    #[test]
    fn header_lines_match_zeek_reference() {
        let Some(reference) = reference_log() else {
            return;
        };
        let mut out = Vec::new();
        TsvEncoder.header("conn", 1_300_475_167_000_000_000, &mut out);
        let ours = String::from_utf8(out).unwrap();
        let ours: Vec<&str> = ours.lines().collect();
        let theirs: Vec<&str> = reference
            .lines()
            .filter(|l| l.starts_with('#') && !l.starts_with("#close") && !l.starts_with("###"))
            .collect();
        assert_eq!(ours.len(), theirs.len(), "header line count");
        for (o, t) in ours.iter().zip(&theirs) {
            if t.starts_with("#open") {
                // The reference masks the date (and the canonifier replaces its tab).
                assert_eq!(*o, "#open\t2011-03-18-19-06-07");
            } else if t.starts_with("#fields") {
                assert_eq!(*o, format!("{t}\tcommunity_id"), "fields line");
            } else if t.starts_with("#types") {
                assert_eq!(*o, format!("{t}\tstring"), "types line");
            } else {
                assert_eq!(o, t, "header line");
            }
        }
    }

    #[test]
    fn record_matches_reference_row_columns() {
        let Some(reference) = reference_log() else {
            return;
        };
        let row = reference
            .lines()
            .find(|l| l.contains("\t51880\t"))
            .expect("reference row for port 51880");
        let theirs: Vec<&str> = row.split('\t').collect();
        let line = encode(&ssh_basic_row());
        let line = line.strip_suffix('\n').expect("row ends with a newline");
        let ours: Vec<&str> = line.split('\t').collect();
        assert_eq!(ours.len(), theirs.len() + 1, "one extra column: {line}");
        assert_eq!(ours[0], "1324071333.493287");
        // Skip ts (masked) and uid (seed-dependent); compare every other Zeek column.
        for i in 2..theirs.len() {
            assert_eq!(ours[i], theirs[i], "column {}", CONN_FIELDS[i].0);
        }
        assert_eq!(ours[theirs.len()], "-", "community_id unset");
    }

    #[test]
    fn zero_duration_and_empty_values_are_unset() {
        let mut rec = ssh_basic_row();
        rec.duration_ns = 0;
        rec.service = ServiceList::default();
        rec.history = History::default();
        rec.local_orig = None;
        rec.proto = Transport::Udp;
        rec.community_id = CommunityId::from_str_lossy("1:abc");
        let line = encode(&rec);
        let cols: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(cols[7..12], ["-", "-", "-", "-", "SF"]);
        assert_eq!(cols[12], "-");
        assert_eq!(cols[15], "-");
        assert_eq!(cols[22], "1:abc");
    }

    #[test]
    fn sub_microsecond_duration_is_unset_like_zeek() {
        let mut rec = ssh_basic_row();
        rec.ts_ns = 1_000_000_000_000_000_100;
        rec.duration_ns = 500;
        let line = encode(&rec);
        assert_eq!(line.split('\t').nth(8), Some("-"));
    }

    #[test]
    fn tunnel_parents_and_services_are_comma_joined() {
        let mut rec = ssh_basic_row();
        let mut s = ServiceList::default();
        s.push(Service::Imap);
        s.push(Service::Ssl);
        rec.service = s;
        let a = Uid::from_bits(1, 2);
        let b = Uid::from_bits(3, 4);
        rec.tunnel_parents = [Some(a), Some(b)];
        let line = encode(&rec);
        let cols: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(cols[7], "imap,ssl");
        assert_eq!(cols[20], format!("{a},{b}"));
    }

    #[test]
    fn strings_are_escaped_like_zeek() {
        let mut out = Vec::new();
        write_string(&mut out, b"a\tb\\c\x7f", false);
        assert_eq!(out, b"a\\x09b\\x5cc\\x7f");
        out.clear();
        write_string(&mut out, b"-", false);
        assert_eq!(out, b"\\x2d");
        out.clear();
        write_string(&mut out, b"(empty)", false);
        assert_eq!(out, b"\\x28empty)");
        out.clear();
        write_string(&mut out, b"a,b", true);
        assert_eq!(out, b"a\\x2cb");
        out.clear();
        write_string(&mut out, b"", false);
        assert_eq!(out, b"(empty)");
    }

    #[test]
    fn footer_has_close_date() {
        let mut out = Vec::new();
        TsvEncoder.footer(1_300_475_168_000_000_000, &mut out);
        assert_eq!(out, b"#close\t2011-03-18-19-06-08\n");
    }

    #[test]
    fn ipv6_addresses_render_compressed() {
        let mut rec = ssh_basic_row();
        rec.orig_h = "fd00::1".parse().unwrap();
        rec.resp_h = "fd00:0:0:1::2".parse().unwrap();
        let line = encode(&rec);
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!((cols[2], cols[4]), ("fd00::1", "fd00:0:0:1::2"));
    }
}

//! Zeek's JSON log format (`LogAscii::use_json=T`): one object per line, keys in column order,
//! unset fields left out.
//!
//! Zeek hands its `double` times to RapidJSON, which prints the shortest decimal that reads
//! back as the same double. For `ts` that is the microsecond timestamp with trailing zeros
//! dropped (and `.0` for a whole second). `duration` is the difference of two such doubles, so
//! Zeek prints its floating-point noise (`6.159325838088989`); we compute the same double and
//! print it the same way, so our lines equal Zeek's.

use super::record::ConnRecord;
use super::zeek::{span, ZeekTime};
use super::Encoder;
use std::io::Write;

/// Encodes `conn.log` records as Zeek JSON lines.
#[derive(Default, Debug)]
pub struct JsonEncoder;

impl Encoder for JsonEncoder {
    fn header(&mut self, _path: &str, _open_ts_ns: u64, _out: &mut Vec<u8>) {
        // Zeek's JSON logs have no header lines.
    }

    fn conn(&mut self, rec: &ConnRecord, out: &mut Vec<u8>) {
        let (start, end, has_duration) = span(rec);
        // Writing into a Vec cannot fail, so the `write!` results below are ignored.
        out.extend_from_slice(b"{\"ts\":");
        write_time(out, start);
        out.extend_from_slice(b",\"uid\":");
        write_json_string(out, rec.uid.as_str());
        let _ = write!(
            out,
            ",\"id.orig_h\":\"{}\",\"id.orig_p\":{},\"id.resp_h\":\"{}\",\"id.resp_p\":{},\"proto\":\"{}\"",
            rec.orig_h,
            rec.orig_p,
            rec.resp_h,
            rec.resp_p,
            rec.proto.as_str()
        );
        if !rec.service.is_empty() {
            out.extend_from_slice(b",\"service\":\"");
            for (i, s) in rec.service.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(s.as_str().as_bytes());
            }
            out.push(b'"');
        }
        if has_duration {
            out.extend_from_slice(b",\"duration\":");
            write_double(out, end.as_f64() - start.as_f64());
            let _ = write!(
                out,
                ",\"orig_bytes\":{},\"resp_bytes\":{}",
                rec.orig_bytes, rec.resp_bytes
            );
        }
        let _ = write!(out, ",\"conn_state\":\"{}\"", rec.conn_state.as_str());
        if let Some(v) = rec.local_orig {
            let _ = write!(out, ",\"local_orig\":{v}");
        }
        if let Some(v) = rec.local_resp {
            let _ = write!(out, ",\"local_resp\":{v}");
        }
        let _ = write!(out, ",\"missed_bytes\":{}", rec.missed_bytes);
        if !rec.history.is_empty() {
            out.extend_from_slice(b",\"history\":");
            write_json_string(out, rec.history.as_str());
        }
        let _ = write!(
            out,
            ",\"orig_pkts\":{},\"orig_ip_bytes\":{},\"resp_pkts\":{},\"resp_ip_bytes\":{}",
            rec.orig_pkts, rec.orig_ip_bytes, rec.resp_pkts, rec.resp_ip_bytes
        );
        let mut parents = rec.tunnel_parents.iter().flatten().peekable();
        if parents.peek().is_some() {
            out.extend_from_slice(b",\"tunnel_parents\":[");
            for (i, uid) in parents.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(out, uid.as_str());
            }
            out.push(b']');
        }
        let _ = write!(out, ",\"ip_proto\":{}", rec.ip_proto);
        let cid = rec.community_id.as_str();
        if !cid.is_empty() {
            out.extend_from_slice(b",\"community_id\":");
            write_json_string(out, cid);
        }
        out.extend_from_slice(b"}\n");
    }

    fn footer(&mut self, _close_ts_ns: u64, _out: &mut Vec<u8>) {
        // Zeek's JSON logs have no footer lines.
    }
}

/// Writes a time as RapidJSON prints Zeek's `double`: the six-decimal value with trailing zeros
/// dropped, or `.0` for a whole second. This is exact for every epoch time up to the year
/// 2242, where one microsecond is still more than a double's resolution.
fn write_time(out: &mut Vec<u8>, t: ZeekTime) {
    let _ = write!(out, "{}.", t.secs);
    if t.micros == 0 {
        out.push(b'0');
        return;
    }
    let mut frac = t.micros;
    let mut digits = 6;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    let _ = write!(out, "{frac:0digits$}");
}

/// Writes a double as RapidJSON does: the shortest digits that read back as the same value,
/// with a `.0` on whole numbers and exponent notation below 1e-6 (RapidJSON switches to it
/// there; Rust's `Display` never does, `LowerExp` gives the same shortest digits).
fn write_double(out: &mut Vec<u8>, d: f64) {
    if !d.is_finite() {
        // Zeek writes `null` for NaN and infinities.
        out.extend_from_slice(b"null");
        return;
    }
    if d != 0.0 && d.abs() < 1e-6 {
        let _ = write!(out, "{d:e}");
        return;
    }
    let start = out.len();
    let _ = write!(out, "{d}");
    if !out[start..].contains(&b'.') {
        out.extend_from_slice(b".0");
    }
}

/// Writes a JSON string with the escapes RapidJSON uses: `\"`, `\\`, the short forms for
/// backspace, form feed, newline, carriage return and tab, and `\u00XX` for other control bytes.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::record::{CommunityId, History, Uid};
    use crate::output::tsv::tests::ssh_basic_row;
    use crate::output::tsv::TsvEncoder;
    use crate::output::zeek::CONN_FIELDS;
    use serde_json::Value;

    fn encode(rec: &ConnRecord) -> (Value, String) {
        let mut out = Vec::new();
        JsonEncoder.conn(rec, &mut out);
        let line = String::from_utf8(out).expect("JSON output is UTF-8");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"));
        (v, line)
    }

    fn tsv_columns(rec: &ConnRecord) -> Vec<String> {
        let mut out = Vec::new();
        TsvEncoder.conn(rec, &mut out);
        let line = String::from_utf8(out).unwrap();
        line.trim_end().split('\t').map(str::to_owned).collect()
    }

    /// Renders a JSON value the way the TSV writer renders the same column.
    fn as_tsv(name: &str, v: &Value) -> String {
        match v {
            Value::Bool(b) => if *b { "T" } else { "F" }.to_owned(),
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().expect("set of strings").to_owned())
                .collect::<Vec<_>>()
                .join(","),
            Value::Number(n) if name == "ts" || name == "duration" => {
                format!("{:.6}", n.as_f64().unwrap())
            }
            Value::Number(n) => n.to_string(),
            other => panic!("unexpected JSON value for {name}: {other}"),
        }
    }

    fn assert_same_as_tsv(rec: &ConnRecord) {
        let (json, line) = encode(rec);
        let tsv = tsv_columns(rec);
        let obj = json.as_object().expect("a JSON object");
        // Keys appear in column order and only for set columns.
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut expected_keys = Vec::new();
        for (i, (name, _)) in CONN_FIELDS.iter().enumerate() {
            match obj.get(*name) {
                Some(v) => {
                    expected_keys.push(*name);
                    assert_eq!(as_tsv(name, v), tsv[i], "column {name} in {line}");
                }
                None => assert_eq!(tsv[i], "-", "column {name} missing from {line}"),
            }
        }
        assert_eq!(keys.len(), expected_keys.len(), "no unknown keys in {line}");
        let order: Vec<usize> = expected_keys
            .iter()
            .map(|k| line.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "key order in {line}");
    }

    #[test]
    fn json_agrees_with_tsv() {
        let rec = ssh_basic_row();
        assert_same_as_tsv(&rec);
        let mut rec2 = rec;
        rec2.duration_ns = 0;
        rec2.local_orig = None;
        rec2.history = History::default();
        rec2.tunnel_parents = [Some(Uid::from_bits(7, 7)), None];
        rec2.community_id = CommunityId::from_str_lossy("1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        rec2.orig_h = "fd00::10".parse().unwrap();
        rec2.resp_h = "fd00::20".parse().unwrap();
        assert_same_as_tsv(&rec2);
    }

    #[test]
    fn numbers_print_like_rapidjson() {
        let (_, line) = encode(&ssh_basic_row());
        assert!(
            line.starts_with("{\"ts\":1324071333.493287,\"uid\":\"C"),
            "{line}"
        );
        // The difference of two epoch doubles, as Zeek computes and prints it.
        let d = 1_324_071_339.652_613_f64 - 1_324_071_333.493_287_f64;
        assert!(line.contains(&format!("\"duration\":{d},")), "{line}");
        let mut out = Vec::new();
        write_time(
            &mut out,
            ZeekTime {
                secs: 10,
                micros: 100_000,
            },
        );
        write_time(
            &mut out,
            ZeekTime {
                secs: 10,
                micros: 0,
            },
        );
        write_double(&mut out, 2.0);
        assert_eq!(out, b"10.110.02.0");
        out.clear();
        write_double(&mut out, 9.5367431640625e-7);
        assert_eq!(out, b"9.5367431640625e-7");
    }

    #[test]
    fn strings_escape_like_rapidjson() {
        let mut out = Vec::new();
        write_json_string(&mut out, "a\"b\\c\n\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001é\"".as_bytes());
    }

    #[test]
    fn no_header_or_footer() {
        let mut out = Vec::new();
        JsonEncoder.header("conn", 1, &mut out);
        JsonEncoder.footer(1, &mut out);
        assert!(out.is_empty());
    }
}

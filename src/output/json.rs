//! Zeek's JSON log format (`LogAscii::use_json=T`): one object per line, keys in column order,
//! unset fields left out, sets and vectors as arrays.
//!
//! Zeek hands its `double` times to RapidJSON, which prints the shortest decimal that reads
//! back as the same double. For `ts` that is the microsecond timestamp with trailing zeros
//! dropped (and `.0` for a whole second). `duration` is the difference of two such doubles, so
//! Zeek prints its floating-point noise (`6.159325838088989`); we compute the same double and
//! print it the same way, so our lines equal Zeek's.

use super::schema::{Field, FieldSink, LogRecord, Schema};
use super::zeek::{micros_differ, write_addr, write_i64, write_padded, write_u64, Civil, ZeekTime};
use super::JsonTs;
use std::io::Write;
use std::net::IpAddr;

/// Writes one record as a JSON line into `out` (appending). With `path_key`, the object
/// starts with `"_path":"<log>"` so that a stream carrying several logs can be split again.
pub(crate) fn encode<R: LogRecord>(rec: &R, ts: JsonTs, path_key: bool, out: &mut Vec<u8>) {
    let schema = R::schema();
    out.push(b'{');
    let mut sink = JsonFields {
        out,
        fields: schema.fields,
        idx: 0,
        wrote_any: false,
        container: None,
        ts,
    };
    if path_key {
        sink.out.extend_from_slice(b"\"_path\":");
        write_json_string(sink.out, schema.path.as_bytes());
        sink.wrote_any = true;
    }
    rec.write_fields(&mut sink);
    debug_assert_eq!(
        sink.idx,
        schema.fields.len(),
        "{} record wrote a wrong number of columns",
        schema.path
    );
    out.extend_from_slice(b"}\n");
}

/// Zeek's JSON logs have no header lines; this exists so both formats share one shape.
pub(crate) fn header(_schema: &Schema, _open_ts_ns: u64, _out: &mut Vec<u8>) {}

/// The field sink behind [`encode`].
struct JsonFields<'a> {
    out: &'a mut Vec<u8>,
    fields: &'static [Field],
    idx: usize,
    wrote_any: bool,
    /// Elements written so far when inside a set or vector.
    container: Option<usize>,
    ts: JsonTs,
}

impl JsonFields<'_> {
    /// Starts a value: the separator and key of the next column, or the separator between
    /// container elements.
    fn begin_value(&mut self) {
        if let Some(n) = self.container.as_mut() {
            if *n > 0 {
                self.out.push(b',');
            }
            *n += 1;
            return;
        }
        if self.wrote_any {
            self.out.push(b',');
        }
        self.wrote_any = true;
        // Column names are plain ASCII chosen by us: no escaping needed.
        let name = self.fields.get(self.idx).map_or("_extra", |f| f.name);
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.idx += 1;
    }
}

impl FieldSink for JsonFields<'_> {
    fn unset(&mut self) {
        if self.container.is_none() {
            self.idx += 1;
        }
    }

    fn time(&mut self, ns: u64) {
        self.begin_value();
        let t = ZeekTime::from_ns(ns);
        match self.ts {
            JsonTs::Epoch => write_time(self.out, t),
            JsonTs::Iso8601 => write_iso8601(self.out, t),
        }
    }

    fn interval(&mut self, ns: u64) {
        self.begin_value();
        write_double(self.out, ns as f64 / 1e9);
    }

    fn interval_between(&mut self, start_ns: u64, end_ns: u64) {
        self.begin_value();
        let (s, e) = (ZeekTime::from_ns(start_ns), ZeekTime::from_ns(end_ns));
        if micros_differ(start_ns, end_ns) {
            write_double(self.out, e.as_f64() - s.as_f64());
        } else {
            write_double(self.out, 0.0);
        }
    }

    fn count(&mut self, v: u64) {
        self.begin_value();
        write_u64(self.out, v);
    }

    fn int(&mut self, v: i64) {
        self.begin_value();
        write_i64(self.out, v);
    }

    fn double(&mut self, v: f64) {
        self.begin_value();
        write_double(self.out, v);
    }

    fn port(&mut self, v: u16) {
        self.begin_value();
        write_u64(self.out, u64::from(v));
    }

    fn addr(&mut self, v: IpAddr) {
        self.begin_value();
        self.out.push(b'"');
        write_addr(self.out, v);
        self.out.push(b'"');
    }

    fn subnet(&mut self, addr: IpAddr, prefix_len: u8) {
        self.begin_value();
        let _ = write!(self.out, "\"{addr}/{prefix_len}\"");
    }

    fn bool(&mut self, v: bool) {
        self.begin_value();
        self.out
            .extend_from_slice(if v { b"true" as &[u8] } else { b"false" });
    }

    fn enumeration(&mut self, v: &str) {
        self.begin_value();
        write_json_string(self.out, v.as_bytes());
    }

    fn string(&mut self, v: &[u8]) {
        self.begin_value();
        write_json_string(self.out, v);
    }

    fn begin_container(&mut self) {
        self.begin_value();
        self.out.push(b'[');
        self.container = Some(0);
    }

    fn end_container(&mut self) {
        self.container = None;
        self.out.push(b']');
    }
}

/// Writes a time as RapidJSON prints Zeek's `double`: the six-decimal value with trailing zeros
/// dropped, or `.0` for a whole second. This is exact for every epoch time up to the year
/// 2242, where one microsecond is still more than a double's resolution.
fn write_time(out: &mut Vec<u8>, t: ZeekTime) {
    write_u64(out, t.secs);
    out.push(b'.');
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
    write_padded(out, u64::from(frac), digits);
}

/// Writes a time as Zeek's `LogAscii::json_timestamps=JSON::TS_ISO8601` does:
/// `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` in UTC, the fraction rounded from the time's `double`.
fn write_iso8601(out: &mut Vec<u8>, t: ZeekTime) {
    let c = Civil::from_ns(t.secs * 1_000_000_000);
    let frac = (t.as_f64().fract() * 1e6).round();
    let _ = write!(
        out,
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\"",
        c.year, c.month, c.day, c.hour, c.minute, c.second, frac as u32
    );
}

/// Writes a double as RapidJSON does: the shortest digits that read back as the same value,
/// with a `.0` on whole numbers and exponent notation below 1e-6 (RapidJSON switches to it
/// there; Rust's `Display` never does, `LowerExp` gives the same shortest digits).
pub(crate) fn write_double(out: &mut Vec<u8>, d: f64) {
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
/// backspace, form feed, newline, carriage return and tab, and `\u00XX` for other control
/// bytes. Bytes that are not valid UTF-8 become the four characters `\xNN`, as Zeek's
/// `json_escape_utf8` renders them, so the output is always valid JSON.
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    // Most values (uids, names, states) need no escape at all.
    if s.iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    for chunk in s.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
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
        for &b in chunk.invalid() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\\\x");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::record::{CommunityId, ConnRecord, History, Uid, CONN};
    use crate::output::tsv::tests::ssh_basic_row;
    use serde_json::Value;

    fn encode_conn(rec: &ConnRecord) -> (Value, String) {
        let mut out = Vec::new();
        encode(rec, JsonTs::Epoch, false, &mut out);
        let line = String::from_utf8(out).expect("JSON output is UTF-8");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"));
        (v, line)
    }

    fn tsv_columns(rec: &ConnRecord) -> Vec<String> {
        let mut out = Vec::new();
        crate::output::tsv::encode(rec, &mut out);
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
        let (json, line) = encode_conn(rec);
        let tsv = tsv_columns(rec);
        let obj = json.as_object().expect("a JSON object");
        // Keys appear in column order and only for set columns.
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut expected_keys = Vec::new();
        for (i, f) in CONN.fields.iter().enumerate() {
            match obj.get(f.name) {
                Some(v) => {
                    expected_keys.push(f.name);
                    assert_eq!(as_tsv(f.name, v), tsv[i], "column {} in {line}", f.name);
                }
                None => assert_eq!(tsv[i], "-", "column {} missing from {line}", f.name),
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
        rec2.community_id = CommunityId::from_digest([0xa5; 20]);
        rec2.orig_h = "fd00::10".parse().unwrap();
        rec2.resp_h = "fd00::20".parse().unwrap();
        assert_same_as_tsv(&rec2);
    }

    #[test]
    fn name_sets_are_a_json_array_and_a_zeek_tsv_set() {
        use crate::output::record::{ConnExtra, ConnLine, HostName};
        use crate::types::name::{Name, NameSource};
        let rec = ssh_basic_row();
        let mut x = ConnExtra::default();
        x.names.resp = HostName {
            name: Name::new(b"b.example"),
            source: Some(NameSource::Sni),
        };
        for n in [&b"b.example"[..], b"a,b.example", b"c.example"] {
            x.names.resp_all.push(n);
        }
        let line = ConnLine {
            rec: &rec,
            extra: Some(&x),
        };
        let mut out = Vec::new();
        encode(&line, JsonTs::Epoch, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["resp_name"], "b.example");
        assert_eq!(
            v["resp_names"],
            serde_json::json!(["b.example", "a,b.example", "c.example"]),
            "{text}"
        );
        assert!(v.get("orig_names").is_none(), "unset when no name: {text}");
        let mut out = Vec::new();
        crate::output::tsv::encode(&line, &mut out);
        let tsv = String::from_utf8(out).unwrap();
        let cols: Vec<&str> = tsv.trim_end().split('\t').collect();
        let at = |name: &str| {
            ConnLine::schema()
                .fields
                .iter()
                .position(|f| f.name == name)
                .unwrap()
        };
        // Zeek's set formatting: comma-separated, a comma inside an element escaped.
        assert_eq!(
            cols[at("resp_names")],
            "b.example,a\\x2cb.example,c.example"
        );
        assert_eq!(cols[at("orig_names")], "-");
        assert_eq!(at("orig_names"), at("resp_name_src") + 1);
    }

    #[test]
    fn numbers_print_like_rapidjson() {
        let (_, line) = encode_conn(&ssh_basic_row());
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
    fn iso8601_timestamps_like_zeek() {
        let mut out = Vec::new();
        encode(&ssh_basic_row(), JsonTs::Iso8601, false, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.starts_with("{\"ts\":\"2011-12-16T21:35:33.493287Z\",\"uid\":"),
            "{line}"
        );
        // Only times change; the duration stays a number.
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(v["duration"].is_f64());
    }

    #[test]
    fn path_key_comes_first() {
        let mut out = Vec::new();
        encode(&ssh_basic_row(), JsonTs::Epoch, true, &mut out);
        assert!(out.starts_with(b"{\"_path\":\"conn\",\"ts\":"));
    }

    #[test]
    fn strings_escape_like_rapidjson() {
        let mut out = Vec::new();
        write_json_string(&mut out, "a\"b\\c\n\u{1}é".as_bytes());
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001é\"".as_bytes());
        out.clear();
        write_json_string(&mut out, b"x\xffy");
        assert_eq!(out, b"\"x\\\\xffy\"");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, "x\\xffy");
    }
}

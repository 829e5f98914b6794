//! The operator's own table, for anything the other inventories do not cover: JSON lines,
//! one object per address and window:
//!
//! ```text
//! {"ip": "10.1.2.3", "valid_from": "2024-05-01T10:00:00Z", "valid_to": 1714561200, "team": "payments"}
//! ```
//!
//! `ip` is required. `valid_from` and `valid_to` are optional (an RFC 3339 time or seconds
//! since the epoch; missing means "always" on that side). Keys named like a standard column
//! (`pod`, `pod_namespace`, `pod_node`, `svc`, `instance`, `instance_name`, `vpc`) fill it;
//! every other key is an attribute an extra column can read. Values are strings, numbers or
//! booleans (written as JSON writes them); `null` means unknown. Blank lines are skipped.

use super::{fill_extras, parse_time, ContextError, Rank, Values, Window, STANDARD_COLUMNS};
use serde_json::{Map, Value};
use std::path::Path;

/// Parses a whole table.
pub fn parse(path: &Path, text: &str, wanted: &[String]) -> Result<Vec<Window>, ContextError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let obj: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| ContextError::Syntax {
                path: path.to_owned(),
                line: line_no,
                column: e.column(),
                message: format!("{e}; each line must be one JSON object"),
            })?;
        out.push(
            row(&obj, wanted).map_err(|(field, message)| ContextError::Field {
                path: path.to_owned(),
                field: format!("line {line_no}: {field}"),
                message,
            })?,
        );
    }
    Ok(out)
}

fn text(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err("expected a string, number or boolean".into()),
    }
}

fn time(v: Option<&Value>) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s).map(Some).ok_or_else(|| {
            format!(
                "{s:?} is not a time; write RFC 3339 (2024-05-01T10:00:00Z) or seconds since \
                 the epoch"
            )
        }),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(s) if (0.0..1.8e10).contains(&s) => Ok(Some((s * 1e9).round() as u64)),
            _ => Err(format!("{n} is not a time in seconds since the epoch")),
        },
        Some(_) => Err("expected an RFC 3339 time or seconds since the epoch".into()),
    }
}

fn row(obj: &Map<String, Value>, wanted: &[String]) -> Result<Window, (String, String)> {
    let ip = match obj.get("ip") {
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            (
                "ip".to_owned(),
                format!("{s:?} is not an IP address; write one address such as 10.1.2.3"),
            )
        })?,
        Some(_) => return Err(("ip".into(), "expected a string such as \"10.1.2.3\"".into())),
        None => return Err(("ip".into(), "missing; every row needs an address".into())),
    };
    let from = time(obj.get("valid_from")).map_err(|m| ("valid_from".to_owned(), m))?;
    let to = time(obj.get("valid_to")).map_err(|m| ("valid_to".to_owned(), m))?;
    let (from_ns, to_ns) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    if to_ns <= from_ns {
        return Err((
            "valid_to".into(),
            "is not after valid_from; a window must not be empty".into(),
        ));
    }
    let mut values: Values = Default::default();
    let mut attrs: Vec<(&str, String)> = Vec::new();
    for (k, v) in obj {
        if matches!(k.as_str(), "ip" | "valid_from" | "valid_to") {
            continue;
        }
        let Some(v) = text(v).map_err(|m| (k.clone(), m))? else {
            continue;
        };
        match STANDARD_COLUMNS.iter().position(|c| c == k) {
            Some(c) => values[c] = (!v.is_empty()).then(|| v.into()),
            None => attrs.push((k.as_str(), v)),
        }
    }
    fill_extras(&mut values, wanted, |n| {
        attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str())
    });
    Ok(Window {
        ip,
        from_ns,
        to_ns,
        rank: Rank::Table,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::col;

    #[test]
    fn rows_fill_standard_and_extra_columns() {
        let t = r#"{"ip":"10.1.2.3","valid_from":"2024-05-01T10:00:00Z","valid_to":1714561200,"team":"payments","pod":"legacy-vm","cost":12.5}

{"ip":"fd00::7","owner":null}"#;
        let ws = parse(Path::new("t.jsonl"), t, &["team".into(), "cost".into()]).unwrap();
        assert_eq!(ws.len(), 2);
        assert_eq!(ws[0].from_ns, 1_714_557_600_000_000_000);
        assert_eq!(ws[0].to_ns, 1_714_561_200_000_000_000);
        assert_eq!(ws[0].values[col::POD].as_deref(), Some("legacy-vm"));
        assert_eq!(ws[0].values[7].as_deref(), Some("payments"));
        assert_eq!(ws[0].values[8].as_deref(), Some("12.5"));
        assert_eq!((ws[1].from_ns, ws[1].to_ns), (0, u64::MAX));
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let p = Path::new("t.jsonl");
        let e = parse(p, "{\"ip\":\"10.0.0.1\"}\n{\"ip\":\"10.0.0.300\"}\n", &[]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("t.jsonl") && s.contains("line 2: ip"), "{s}");
        let e = parse(p, "{\"ip\":\"10.0.0.1\"}\n\n{\"ip\": \n", &[]).unwrap_err();
        assert!(matches!(e, ContextError::Syntax { line: 3, .. }), "{e}");
        let e = parse(p, "{\"ip\":\"10.0.0.1\",\"valid_from\":\"soon\"}", &[]).unwrap_err();
        assert!(e.to_string().contains("line 1: valid_from"), "{e}");
        let e = parse(p, "{\"ip\":\"10.0.0.1\",\"x\":[1]}", &[]).unwrap_err();
        assert!(e.to_string().contains("line 1: x"), "{e}");
        let e = parse(
            p,
            "{\"ip\":\"10.0.0.1\",\"valid_from\":5,\"valid_to\":5}",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("valid_to"), "{e}");
    }
}

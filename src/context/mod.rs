//! Context: which workload held an address when a connection started.
//!
//! Inventories that operators already produce map addresses to workload context, each
//! mapping with a validity window, because addresses are reused within minutes:
//!
//! - [`kube`]: `kubectl get pods|services|nodes -A -o json` (pod name, namespace, node, uid,
//!   labels; service ClusterIPs; node InternalIPs);
//! - [`aws`]: `aws ec2 describe-instances` (instance id, Name tag, VPC, subnet, zone,
//!   account, private and public addresses);
//! - [`table`]: a JSON-lines table `{ip, valid_from?, valid_to?, fields...}` for anything else.
//!
//! - [`watch`]: Kubernetes watch events (`kubectl get ... --watch --output-watch-events -o
//!   json`) from a file, a FIFO or a command ([`command`] runs and restarts it).
//!
//! [`history`] turns successive snapshots (the files of a directory, in modification-time
//! order) into windows: a later snapshot extends a window, an object that vanishes or is
//! deleted closes it, and a new holder of the same address closes the previous one.
//! [`inventory`] is the read-only, indexed result: one hash lookup per address, then a scan
//! of that address's few windows. [`reload`] watches the files from a thread of its own,
//! rebuilds off the packet path and swaps the new inventory in atomically (`arc-swap`); each
//! worker checks for a new one once per batch, never takes a lock, and copies what it finds
//! into the record's fixed-size [`ConnContext`].
//!
//! Field reference and the commands that produce each input: `docs/context.md`.

pub mod aws;
pub mod command;
pub mod history;
pub mod inventory;
pub mod kube;
pub mod reload;
pub mod table;
pub mod watch;

pub use inventory::Inventory;
pub use reload::{Context, ContextEvent, ContextReader, ContextStats, Loader};

pub use crate::types::context::{
    col, ConnContext, EndContext, COLUMNS, COLUMN_CAP, END_ARENA, MAX_EXTRA, STANDARD_COLUMNS,
};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Validated context settings (the `[context]` config section and the `--context*` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct ContextConfig {
    /// Inventory files, snapshot directories and FIFOs.
    pub paths: Vec<PathBuf>,
    /// Shell commands whose output is a Kubernetes watch stream (`kubectl get ... --watch
    /// --output-watch-events -o json`), started again when they exit.
    pub commands: Vec<String>,
    /// Extra columns: the column name (after `orig_`/`resp_` and the prefix) and the
    /// attribute it is filled from (`label:app`, `tag:Team`, `az`, a table field, ...).
    pub extra: Vec<ExtraColumn>,
    /// What comes between `orig_`/`resp_` and an extra column's name (`ctx_`).
    pub prefix: String,
    /// How often files are checked for changes.
    pub poll: Duration,
    /// Windows kept at most over all inventories; beyond it the windows that closed longest
    /// ago are dropped and counted.
    pub max_records: usize,
}

impl Default for ContextConfig {
    fn default() -> ContextConfig {
        ContextConfig {
            paths: Vec::new(),
            commands: Vec::new(),
            extra: Vec::new(),
            prefix: "ctx_".into(),
            poll: Duration::from_secs(2),
            max_records: 2_000_000,
        }
    }
}

/// One extra column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraColumn {
    pub name: String,
    pub attribute: String,
}

impl ContextConfig {
    /// The conn.log column names this configuration adds, in order: `orig_` standard, `resp_`
    /// standard, `orig_<prefix>` extras, `resp_<prefix>` extras.
    pub fn column_names(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(2 * COLUMNS);
        for end in ["orig_", "resp_"] {
            for c in STANDARD_COLUMNS {
                out.push(format!("{end}{c}"));
            }
        }
        for end in ["orig_", "resp_"] {
            for e in &self.extra {
                out.push(format!("{end}{}{}", self.prefix, e.name));
            }
        }
        out
    }

    /// The attribute names the extra columns read, in column order.
    pub fn attributes(&self) -> Vec<String> {
        self.extra.iter().map(|e| e.attribute.clone()).collect()
    }

    /// Checks names and limits; the error names the setting and what is expected.
    pub fn validate(&self) -> Result<(), String> {
        if self.extra.len() > MAX_EXTRA {
            return Err(format!(
                "context.extra / --context-column: {} extra columns given; at most {MAX_EXTRA} \
                 fit in a record",
                self.extra.len()
            ));
        }
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !self.prefix.is_empty() && !ident(&self.prefix) {
            return Err(format!(
                "context.prefix / --context-prefix {:?}: use lower-case letters, digits and \
                 _ (at most 32)",
                self.prefix
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.extra {
            if !ident(&e.name) {
                return Err(format!(
                    "context.extra / --context-column: column name {:?}: use lower-case \
                     letters, digits and _ (at most 32)",
                    e.name
                ));
            }
            if e.attribute.is_empty() {
                return Err(format!(
                    "context.extra / --context-column: column {:?} has no attribute; write \
                     NAME=ATTRIBUTE such as app=label:app",
                    e.name
                ));
            }
            let full = format!("{}{}", self.prefix, e.name);
            if STANDARD_COLUMNS.contains(&full.as_str()) || !seen.insert(full.clone()) {
                return Err(format!(
                    "context.extra / --context-column: column {full:?} is already a column; \
                     choose another name or prefix"
                ));
            }
        }
        if self.poll < Duration::from_millis(10) {
            return Err(format!(
                "context.poll / --context-poll {:?}: poll at most every 10ms",
                self.poll
            ));
        }
        if self.max_records == 0 {
            return Err("context.max_records: must be at least 1".into());
        }
        Ok(())
    }
}

/// An inventory file, directory or stream that cannot be used. Each names the file and, where it can,
/// the line and column (JSON syntax) or the field (a value of the wrong form).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("context file {path}: cannot read it: {message}; check the path and permissions")]
    Read { path: PathBuf, message: String },
    #[error("context file {path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("context file {path}: {field}: {message}")]
    Field {
        path: PathBuf,
        /// Where the value is: `items[3].status.podIPs[0].ip`, or `line 7: valid_from`.
        field: String,
        message: String,
    },
    /// A watch stream read from a command or a FIFO: a document that cannot be used (its
    /// line and field), or the command failing.
    #[error("context {origin}: {message}")]
    Stream { origin: String, message: String },
    #[error(
        "context file {path}: not an inventory: expected `kubectl ... -o json` output (a List \
         with items), kubectl watch events ({{\"type\": ..., \"object\": ...}} documents), `aws \
         ec2 describe-instances` output (Reservations), or a JSON-lines table (one \
         {{\"ip\": ...}} object per line, named *.jsonl)"
    )]
    Format { path: PathBuf },
}

impl ContextError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            ContextError::Read { path, .. }
            | ContextError::Syntax { path, .. }
            | ContextError::Field { path, .. }
            | ContextError::Format { path } => path,
            ContextError::Stream { origin, .. } => std::path::Path::new(origin.as_str()),
        }
    }
}

/// How strongly a window's values count when several windows of one address cover the same
/// instant: a column takes the value of the highest rank, and of the latest start among
/// equal ranks. The operator's own table is the fallback ("anything else").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Rank {
    Table = 1,
    Instance = 2,
    Node = 3,
    Service = 4,
    Pod = 5,
}

/// One mapping: an address, its validity window `[from_ns, to_ns)` and its column values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub ip: IpAddr,
    pub from_ns: u64,
    /// `u64::MAX` while open.
    pub to_ns: u64,
    pub rank: Rank,
    pub values: Values,
}

/// Column values of one mapping (standard columns, then extra ones).
pub type Values = [Option<Box<str>>; COLUMNS];

/// Looks up an attribute by name for the extra columns: `attrs` yields (name, value) pairs;
/// fills `values[STANDARD + i]` for each configured attribute `i` found.
pub(crate) fn fill_extras<'a>(
    values: &mut Values,
    wanted: &[String],
    attrs: impl Fn(&str) -> Option<&'a str>,
) {
    for (i, name) in wanted.iter().enumerate() {
        if let Some(v) = attrs(name) {
            if !v.is_empty() {
                values[STANDARD_COLUMNS.len() + i] = Some(v.into());
            }
        }
    }
}

/// An RFC 3339 time (`2024-05-01T10:00:00Z`, `2024-05-01T10:00:00.000+00:00`) as nanoseconds
/// since the epoch; times before 1970 count as 0.
pub(crate) fn parse_time(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    let secs = t.timestamp();
    if secs < 0 {
        return Some(0);
    }
    Some((secs as u64).saturating_mul(1_000_000_000) + u64::from(t.timestamp_subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_context_round_trips_and_cuts() {
        let mut e = EndContext::default();
        assert!(e.is_empty());
        assert!(e.push(col::POD, b"web-7d4b9c-x2x1z"));
        assert!(e.push(col::POD_NAMESPACE, b"shop"));
        let long = "n".repeat(100);
        assert!(!e.push(col::POD_NODE, long.as_bytes()));
        assert_eq!(e.get(col::POD), Some(&b"web-7d4b9c-x2x1z"[..]));
        assert_eq!(e.get(col::POD_NAMESPACE), Some(&b"shop"[..]));
        assert_eq!(e.get(col::POD_NODE).unwrap().len(), 63);
        assert_eq!(e.get(col::SVC), None);
        let vals: Vec<_> = e.values().collect();
        assert_eq!(vals.len(), COLUMNS);
        assert_eq!(vals[1], Some(&b"shop"[..]));
        assert_eq!(vals[3], None);
    }

    #[test]
    fn the_arena_cuts_the_last_columns_when_full() {
        let mut e = EndContext::default();
        let v = "x".repeat(200);
        let mut cut = 0;
        for c in 0..COLUMNS {
            if !e.push(c, v.as_bytes()) {
                cut += 1;
            }
        }
        assert_eq!(cut, COLUMNS);
        let total: usize = e.values().map(|v| v.map_or(0, <[u8]>::len)).sum();
        assert_eq!(total, END_ARENA);
        assert_eq!(e.get(col::POD).unwrap().len(), 63);
        assert_eq!(e.get(COLUMNS - 1), None, "nothing left for the last column");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let s = "ééé".as_bytes(); // 6 bytes, 2 per character
        assert_eq!(crate::types::context::cut_len(s, 3), 2);
        assert_eq!(crate::types::context::cut_len(s, 4), 4);
        assert_eq!(crate::types::context::cut_len(s, 10), 6);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_time("2024-05-01T10:00:00.5+02:00"),
            Some(1_714_550_400_500_000_000)
        );
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Some(0));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn config_validation_names_the_setting() {
        let mut c = ContextConfig::default();
        assert!(c.validate().is_ok());
        c.extra = vec![ExtraColumn {
            name: "App".into(),
            attribute: "label:app".into(),
        }];
        assert!(c.validate().unwrap_err().contains("App"));
        c.extra[0].name = "app".into();
        assert!(c.validate().is_ok());
        c.extra.push(c.extra[0].clone());
        assert!(c.validate().unwrap_err().contains("ctx_app"));
        c.extra.truncate(1);
        c.prefix = String::new();
        c.extra[0].name = "pod".into();
        assert!(c.validate().unwrap_err().contains("\"pod\""));
        c.extra = (0..5)
            .map(|i| ExtraColumn {
                name: format!("c{i}"),
                attribute: "x".into(),
            })
            .collect();
        assert!(c.validate().unwrap_err().contains("at most 4"));
    }

    #[test]
    fn column_names_are_in_order() {
        let c = ContextConfig {
            extra: vec![ExtraColumn {
                name: "team".into(),
                attribute: "team".into(),
            }],
            ..ContextConfig::default()
        };
        let n = c.column_names();
        assert_eq!(n[0], "orig_pod");
        assert_eq!(n[6], "orig_vpc");
        assert_eq!(n[7], "resp_pod");
        assert_eq!(n[14], "orig_ctx_team");
        assert_eq!(n[15], "resp_ctx_team");
    }
}

//! The connection record, in Zeek 8's `conn.log` column order.
//!
//! Every type here is `Copy` and fixed-size so a record can cross a bounded SPSC queue without
//! allocating. Our own columns (`community_id`, then the names, then the context when
//! inventories are configured) come after Zeek's and never reuse a Zeek name.

use super::schema::{Field, FieldSink, LogRecord, Schema, ZeekScalar, ZeekType};
use super::zeek::micros_differ;
use crate::context::ContextConfig;
use crate::types::context::{EndContext, STANDARD_COLUMNS};
pub use crate::types::record::*;
use std::sync::OnceLock;

/// The `conn.log` columns: Zeek 8's, in its order, then ours.
pub static CONN: Schema = Schema::new(
    "conn",
    &[
        Field::new("ts", ZeekType::Time),
        Field::new("uid", ZeekType::String),
        Field::new("id.orig_h", ZeekType::Addr),
        Field::new("id.orig_p", ZeekType::Port),
        Field::new("id.resp_h", ZeekType::Addr),
        Field::new("id.resp_p", ZeekType::Port),
        Field::new("proto", ZeekType::Enum),
        Field::new("service", ZeekType::String),
        Field::new("duration", ZeekType::Interval),
        Field::new("orig_bytes", ZeekType::Count),
        Field::new("resp_bytes", ZeekType::Count),
        Field::new("conn_state", ZeekType::String),
        Field::new("local_orig", ZeekType::Bool),
        Field::new("local_resp", ZeekType::Bool),
        Field::new("missed_bytes", ZeekType::Count),
        Field::new("history", ZeekType::String),
        Field::new("orig_pkts", ZeekType::Count),
        Field::new("orig_ip_bytes", ZeekType::Count),
        Field::new("resp_pkts", ZeekType::Count),
        Field::new("resp_ip_bytes", ZeekType::Count),
        Field::new("tunnel_parents", ZeekType::Set(ZeekScalar::String)),
        Field::new("ip_proto", ZeekType::Count),
        Field::new("community_id", ZeekType::String),
        Field::new("orig_name", ZeekType::String),
        Field::new("orig_name_src", ZeekType::String),
        Field::new("resp_name", ZeekType::String),
        Field::new("resp_name_src", ZeekType::String),
        Field::new("orig_names", ZeekType::Set(ZeekScalar::String)),
        Field::new("resp_names", ZeekType::Set(ZeekScalar::String)),
    ],
);

/// The two columns Zeek's `frameworks/conn_key/vlan_fivetuple` adds to `conn_id_ctx`, which
/// conn.log writes right after `id.resp_p` (Zeek declares them `int`).
const VLAN_FIELDS: [Field; 2] = [
    Field::new("id.ctx.vlan", ZeekType::Int),
    Field::new("id.ctx.inner_vlan", ZeekType::Int),
];

/// Index of the first field after `id.resp_p` in [`CONN`].
const AFTER_RESP_P: usize = 6;

/// conn.log's columns with the VLAN key: [`CONN`]'s with [`VLAN_FIELDS`] after `id.resp_p`.
static CONN_VLAN: OnceLock<Schema> = OnceLock::new();

/// Whether conn.log has the VLAN columns in this process (set once, before the writer starts).
static VLAN_COLUMNS: OnceLock<bool> = OnceLock::new();

/// The conn.log columns before any context column.
fn base_schema() -> &'static Schema {
    if vlan_columns() {
        CONN_VLAN.get_or_init(|| {
            let fields: Vec<Field> = CONN.fields[..AFTER_RESP_P]
                .iter()
                .chain(VLAN_FIELDS.iter())
                .chain(CONN.fields[AFTER_RESP_P..].iter())
                .copied()
                .collect();
            // Leaked once per process: schemas are `'static` like the built-in ones.
            Schema::new("conn", Box::leak(fields.into_boxed_slice()))
        })
    } else {
        &CONN
    }
}

/// Whether conn.log has the VLAN columns. The first call fixes the choice: a log's columns
/// cannot change while it is written, so once a schema or record has been built without them
/// they cannot be added.
fn vlan_columns() -> bool {
    *VLAN_COLUMNS.get_or_init(|| false)
}

/// Gives conn.log the `id.ctx.vlan` and `id.ctx.inner_vlan` columns (`on`, with
/// `--conn-key vlan`) or not, for the rest of the process. Call before the writer starts and
/// before [`enable_context_columns`]; calling again with the same choice does nothing, and
/// asking for the other choice once the columns are fixed is an error.
pub fn enable_vlan_columns(on: bool) -> Result<(), String> {
    if *VLAN_COLUMNS.get_or_init(|| on) == on {
        Ok(())
    } else {
        Err(format!(
            "conn.log's columns were already fixed {} the VLAN columns in this process; choose \
             the connection key before anything writes conn.log",
            if on { "without" } else { "with" }
        ))
    }
}

/// Writes a name and its source, or two unset columns.
fn write_host<S: FieldSink>(h: &HostName, out: &mut S) {
    match h.source {
        Some(src) if !h.name.is_empty() => {
            out.string(h.name.as_bytes());
            out.string(src.as_str().as_bytes());
        }
        _ => {
            out.unset();
            out.unset();
        }
    }
}

/// conn.log's columns when inventories are configured: [`CONN`]'s, then the context
/// columns, and how many extra columns each end has. Set once per process (a log's columns
/// cannot change while it is written).
static CONN_WITH_CONTEXT: OnceLock<(Schema, usize)> = OnceLock::new();

/// Adds the context columns of `cfg` to conn.log for the rest of the process. Call before the
/// writer starts; calling again with the same columns does nothing, with others is an error.
pub fn enable_context_columns(cfg: &ContextConfig) -> Result<(), String> {
    let names = cfg.column_names();
    let mut fresh = false;
    let (schema, _) = CONN_WITH_CONTEXT.get_or_init(|| {
        fresh = true;
        let fields: Vec<Field> = base_schema()
            .fields
            .iter()
            .copied()
            .chain(names.iter().map(|n| {
                // Leaked once per process: schemas are `'static` like the built-in ones.
                let name: &'static str = Box::leak(n.clone().into_boxed_str());
                Field::new(name, ZeekType::String)
            }))
            .collect();
        (
            Schema::new("conn", Box::leak(fields.into_boxed_slice())),
            cfg.extra.len(),
        )
    });
    let same = schema.fields[base_schema().fields.len()..]
        .iter()
        .map(|f| f.name)
        .eq(names.iter().map(String::as_str));
    if fresh || same {
        Ok(())
    } else {
        Err(
            "conn.log already has other context columns in this process; the columns are \
             fixed once set"
                .into(),
        )
    }
}

/// Writes one end's columns `range`, each value or unset.
fn write_context_columns<S: FieldSink>(
    end: &EndContext,
    range: std::ops::Range<usize>,
    out: &mut S,
) {
    let cols = end.columns();
    for v in &cols[range] {
        match v {
            Some(v) => out.string(v),
            None => out.unset(),
        }
    }
}

/// A conn.log line: a record and what travelled beside it (names and context; `None` when
/// neither is on, and every such column is unset).
#[derive(Clone, Copy)]
pub struct ConnLine<'a> {
    pub rec: &'a ConnRecord,
    pub extra: Option<&'a ConnExtra>,
}

impl LogRecord for ConnRecord {
    fn schema() -> &'static Schema {
        ConnLine::schema()
    }

    fn write_fields<S: FieldSink>(&self, out: &mut S) {
        ConnLine {
            rec: self,
            extra: None,
        }
        .write_fields(out)
    }
}

impl LogRecord for ConnLine<'_> {
    fn schema() -> &'static Schema {
        match CONN_WITH_CONTEXT.get() {
            Some((s, _)) => s,
            None => base_schema(),
        }
    }

    fn write_fields<S: FieldSink>(&self, out: &mut S) {
        let extra = self.extra;
        let this = self.rec;
        out.time(this.ts_ns);
        out.string(this.uid.text().as_str().as_bytes());
        out.addr(this.orig_h);
        out.port(this.orig_p);
        out.addr(this.resp_h);
        out.port(this.resp_p);
        if vlan_columns() {
            for id in [this.vlans.outer, this.vlans.inner] {
                match id {
                    Some(v) => out.int(i64::from(v)),
                    None => out.unset(),
                }
            }
        }
        out.enumeration(this.proto.as_str());
        if this.service.is_empty() {
            out.unset();
        } else {
            // Zeek 8 logs `service` as one string with the names joined by commas. Four
            // names of at most 8 bytes fit this stack buffer, so nothing allocates.
            let mut buf = [0u8; 64];
            let mut n = 0;
            for s in this.service.iter() {
                let name = s.as_str().as_bytes();
                let sep = usize::from(n > 0);
                if n + sep + name.len() > buf.len() {
                    break;
                }
                if sep == 1 {
                    buf[n] = b',';
                }
                buf[n + sep..n + sep + name.len()].copy_from_slice(name);
                n += sep + name.len();
            }
            out.string(&buf[..n]);
        }
        // Zeek leaves `duration` and the byte counts unset when the duration is zero (in its
        // microsecond view of time).
        let end = this.ts_ns.saturating_add(this.duration_ns);
        if this.duration_ns != 0 && micros_differ(this.ts_ns, end) {
            out.interval_between(this.ts_ns, end);
            out.count(this.orig_bytes);
            out.count(this.resp_bytes);
        } else {
            out.unset();
            out.unset();
            out.unset();
        }
        out.string(this.conn_state.as_str().as_bytes());
        match this.local_orig {
            Some(v) => out.bool(v),
            None => out.unset(),
        }
        match this.local_resp {
            Some(v) => out.bool(v),
            None => out.unset(),
        }
        out.count(this.missed_bytes);
        if this.history.is_empty() {
            out.unset();
        } else {
            out.string(this.history.as_str().as_bytes());
        }
        out.count(this.orig_pkts);
        out.count(this.orig_ip_bytes);
        out.count(this.resp_pkts);
        out.count(this.resp_ip_bytes);
        if this.tunnel_parents.iter().all(Option::is_none) {
            out.unset();
        } else {
            let texts = this.tunnel_parents.map(|u| u.map(|u| u.text()));
            out.strings(texts.iter().flatten().map(|t| t.as_str().as_bytes()));
        }
        out.count(u64::from(this.ip_proto));
        let cid = this.community_id.text();
        let cid = cid.as_str();
        if cid.is_empty() {
            out.unset();
        } else {
            out.string(cid.as_bytes());
        }
        let none = HostName::default();
        let names = extra.map(|x| &x.names);
        write_host(names.map_or(&none, |n| &n.orig), out);
        write_host(names.map_or(&none, |n| &n.resp), out);
        for list in [names.map(|n| &n.orig_all), names.map(|n| &n.resp_all)] {
            match list {
                Some(l) if !l.is_empty() => out.strings(l.iter()),
                _ => out.unset(),
            }
        }
        if let Some((_, n_extra)) = CONN_WITH_CONTEXT.get() {
            let std = STANDARD_COLUMNS.len();
            let empty = EndContext::default();
            let (o, r) = extra.map_or((&empty, &empty), |x| (&x.context.orig, &x.context.resp));
            write_context_columns(o, 0..std, out);
            write_context_columns(r, 0..std, out);
            write_context_columns(o, std..std + n_extra, out);
            write_context_columns(r, std..std + n_extra, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_starts_with_c_and_is_base62() {
        let uid = Uid::from_bits(u64::MAX, u32::MAX);
        assert!(uid.text().as_str().starts_with('C'));
        assert!(uid.text().as_str()[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Uid::from_bits(0, 0).text().as_str(), "C00");
        assert_eq!(Uid::default().text().as_str(), "");
    }

    #[test]
    fn service_list_keeps_order_and_dedups() {
        let mut s = ServiceList::default();
        s.push(Service::Imap);
        s.push(Service::Ssl);
        s.push(Service::Imap);
        let names: Vec<_> = s.iter().map(Service::as_str).collect();
        assert_eq!(names, ["imap", "ssl"]);
    }
}

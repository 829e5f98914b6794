//! What a log is: a static schema (Zeek's `#path`, the ordered column names and their Zeek
//! types) and a record type that writes its columns, in that order, to a [`FieldSink`].
//!
//! The JSON and TSV encoders are field sinks, so adding a log (dns, namecache, stats, ...) is
//! one [`Schema`] and one [`LogRecord`] implementation; no encoder or sink changes. Records
//! cross the worker → writer queues by value, so a log record type must be `Copy` and
//! fixed-size (inline buffers for strings such as DNS names): nothing allocates per record.
//!
//! ```
//! use nameflow::output::schema::{Field, FieldSink, LogRecord, Schema, ZeekType};
//!
//! #[derive(Clone, Copy)]
//! struct Hello { ts_ns: u64, n: u64 }
//!
//! static HELLO: Schema = Schema::new("hello", &[
//!     Field::new("ts", ZeekType::Time),
//!     Field::new("n", ZeekType::Count),
//! ]);
//!
//! impl LogRecord for Hello {
//!     fn schema() -> &'static Schema { &HELLO }
//!     fn write_fields<S: FieldSink>(&self, out: &mut S) {
//!         out.time(self.ts_ns);
//!         out.count(self.n);
//!     }
//! }
//! ```

use std::net::IpAddr;

/// A Zeek log column type, as the TSV `#types` line spells it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ZeekType {
    Bool,
    Count,
    Int,
    Double,
    Time,
    Interval,
    String,
    Addr,
    Subnet,
    Port,
    Enum,
    /// `set[T]`: written with [`FieldSink::begin_container`] / [`FieldSink::end_container`].
    Set(ZeekScalar),
    /// `vector[T]`: written like a set.
    Vector(ZeekScalar),
}

/// The element type of a set or vector.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ZeekScalar {
    Bool,
    Count,
    Int,
    Double,
    Time,
    Interval,
    String,
    Addr,
    Subnet,
    Port,
    Enum,
}

impl ZeekScalar {
    /// Zeek's name of the type.
    pub const fn name(self) -> &'static str {
        match self {
            ZeekScalar::Bool => "bool",
            ZeekScalar::Count => "count",
            ZeekScalar::Int => "int",
            ZeekScalar::Double => "double",
            ZeekScalar::Time => "time",
            ZeekScalar::Interval => "interval",
            ZeekScalar::String => "string",
            ZeekScalar::Addr => "addr",
            ZeekScalar::Subnet => "subnet",
            ZeekScalar::Port => "port",
            ZeekScalar::Enum => "enum",
        }
    }
}

impl ZeekType {
    /// Writes the type as Zeek's `#types` line spells it (`count`, `set[string]`).
    pub fn write_name(self, out: &mut Vec<u8>) {
        let (wrap, inner) = match self {
            ZeekType::Set(s) => ("set", s),
            ZeekType::Vector(s) => ("vector", s),
            ZeekType::Bool => ("", ZeekScalar::Bool),
            ZeekType::Count => ("", ZeekScalar::Count),
            ZeekType::Int => ("", ZeekScalar::Int),
            ZeekType::Double => ("", ZeekScalar::Double),
            ZeekType::Time => ("", ZeekScalar::Time),
            ZeekType::Interval => ("", ZeekScalar::Interval),
            ZeekType::String => ("", ZeekScalar::String),
            ZeekType::Addr => ("", ZeekScalar::Addr),
            ZeekType::Subnet => ("", ZeekScalar::Subnet),
            ZeekType::Port => ("", ZeekScalar::Port),
            ZeekType::Enum => ("", ZeekScalar::Enum),
        };
        if wrap.is_empty() {
            out.extend_from_slice(inner.name().as_bytes());
        } else {
            out.extend_from_slice(wrap.as_bytes());
            out.push(b'[');
            out.extend_from_slice(inner.name().as_bytes());
            out.push(b']');
        }
    }
}

/// One column of a log.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The column name (`id.orig_h`): the TSV `#fields` entry and the JSON key.
    pub name: &'static str,
    pub ty: ZeekType,
}

impl Field {
    pub const fn new(name: &'static str, ty: ZeekType) -> Field {
        Field { name, ty }
    }
}

/// A log: its Zeek path (the file is `<path>.log`) and its columns in order.
#[derive(Debug)]
pub struct Schema {
    pub path: &'static str,
    pub fields: &'static [Field],
}

impl Schema {
    pub const fn new(path: &'static str, fields: &'static [Field]) -> Schema {
        Schema { path, fields }
    }
}

/// A record of one log. `write_fields` calls exactly one value method (or one container) of
/// the sink per column of `schema()`, in column order; [`FieldSink::unset`] stands for an
/// unset (`&optional` and absent) column.
pub trait LogRecord {
    /// The log this record belongs to.
    fn schema() -> &'static Schema;
    /// Writes every column in schema order.
    fn write_fields<S: FieldSink>(&self, out: &mut S);
}

/// Receives the columns of one record, in schema order. Implemented by the JSON and TSV
/// encoders; each value method also serves as the element method inside a container.
pub trait FieldSink {
    /// The column is unset: TSV `-`, JSON leaves the key out.
    fn unset(&mut self);
    /// A `time`, nanoseconds since the epoch (Zeek keeps microseconds; the rest is truncated).
    fn time(&mut self, ns: u64);
    /// An `interval` of `ns` nanoseconds.
    fn interval(&mut self, ns: u64);
    /// An `interval` that Zeek computes as the difference of two times (`duration`, `rtt`):
    /// the difference of the two microsecond `double`s, with Zeek's floating-point noise in
    /// JSON.
    fn interval_between(&mut self, start_ns: u64, end_ns: u64);
    fn count(&mut self, v: u64);
    fn int(&mut self, v: i64);
    fn double(&mut self, v: f64);
    fn port(&mut self, v: u16);
    fn addr(&mut self, v: IpAddr);
    /// A `subnet` (`198.18.0.0/15`).
    fn subnet(&mut self, addr: IpAddr, prefix_len: u8);
    fn bool(&mut self, v: bool);
    /// An `enum` value (`tcp`, `C_INTERNET`).
    fn enumeration(&mut self, v: &str);
    /// A `string`; bytes that are not UTF-8 are escaped as Zeek escapes them.
    fn string(&mut self, v: &[u8]);
    /// Starts a set or vector column; the values that follow are its elements until
    /// [`FieldSink::end_container`]. An empty container is TSV `(empty)` and JSON `[]`.
    fn begin_container(&mut self);
    fn end_container(&mut self);

    /// A set or vector of strings.
    fn strings<'a, I: IntoIterator<Item = &'a [u8]>>(&mut self, items: I)
    where
        Self: Sized,
    {
        self.begin_container();
        for s in items {
            self.string(s);
        }
        self.end_container();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_zeeks() {
        let mut out = Vec::new();
        ZeekType::Set(ZeekScalar::String).write_name(&mut out);
        out.push(b' ');
        ZeekType::Vector(ZeekScalar::Interval).write_name(&mut out);
        out.push(b' ');
        ZeekType::Port.write_name(&mut out);
        assert_eq!(out, b"set[string] vector[interval] port");
    }
}

//! What a record carries of each end's context (the inventories that fill it are `context`'s).

/// The standard context columns of one end, in conn.log order (`orig_` or `resp_` before
/// each name).
pub const STANDARD_COLUMNS: [&str; 7] = [
    "pod",
    "pod_namespace",
    "pod_node",
    "svc",
    "instance",
    "instance_name",
    "vpc",
];

/// Index of each standard column in [`STANDARD_COLUMNS`] and in a record's values.
pub mod col {
    pub const POD: usize = 0;
    pub const POD_NAMESPACE: usize = 1;
    pub const POD_NODE: usize = 2;
    pub const SVC: usize = 3;
    pub const INSTANCE: usize = 4;
    pub const INSTANCE_NAME: usize = 5;
    pub const VPC: usize = 6;
}

/// Extra columns at most (configured attributes such as a pod label or a table field).
pub const MAX_EXTRA: usize = 4;

/// Columns per end: the standard ones, then the extra ones.
pub const COLUMNS: usize = STANDARD_COLUMNS.len() + MAX_EXTRA;

/// The longest value kept per column, in bytes. Kubernetes names and label values are at
/// most 63 bytes (DNS labels); node names may be longer but rarely are; a service is written
/// `namespace/name`; EC2 ids are 19 (`i-` + 17 hex) and 21 (`vpc-` + 17 hex) bytes. A longer
/// value is cut at the last UTF-8 character boundary that fits, and the cut is counted.
pub const COLUMN_CAP: [usize; COLUMNS] = [63, 63, 63, 127, 31, 63, 31, 63, 63, 63, 63];

/// The bytes one end's values share. Sized for a pod on a cloud instance with all four extra
/// columns set; when an end's values together exceed it, the columns that come last are cut
/// (and counted) so the record stays fixed-size.
pub const END_ARENA: usize = 372;

/// One end's context as it travels in a record: `Copy`, fixed-size, no allocation. Values are
/// stored back to back in column order; a length of zero means unknown (JSON leaves the
/// column out, TSV writes `-`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EndContext {
    lens: [u8; COLUMNS],
    used: u16,
    buf: [u8; END_ARENA],
}

impl Default for EndContext {
    fn default() -> EndContext {
        EndContext {
            lens: [0; COLUMNS],
            used: 0,
            buf: [0; END_ARENA],
        }
    }
}

impl EndContext {
    /// Appends column `c`'s value; columns must come in increasing order. Returns false when
    /// the value had to be cut (its column cap or the shared arena).
    pub fn push(&mut self, c: usize, v: &[u8]) -> bool {
        debug_assert!(c < COLUMNS);
        debug_assert!(
            self.lens[c + 1..].iter().all(|&l| l == 0),
            "columns in order"
        );
        let room = COLUMN_CAP[c].min(END_ARENA - self.used as usize);
        let n = cut_len(v, room);
        let start = self.used as usize;
        self.buf[start..start + n].copy_from_slice(&v[..n]);
        self.lens[c] = n as u8;
        self.used += n as u16;
        n == v.len()
    }

    /// Sets every column at once from lengths and the values back to back (as the inventory
    /// stores them; they fit by construction).
    #[inline]
    pub(crate) fn set_raw(&mut self, lens: &[u8; COLUMNS], bytes: &[u8]) {
        debug_assert_eq!(lens.iter().map(|&l| l as usize).sum::<usize>(), bytes.len());
        self.lens = *lens;
        self.used = bytes.len() as u16;
        self.buf[..bytes.len()].copy_from_slice(bytes);
    }

    /// Column `c`'s value; `None` when unknown.
    pub fn get(&self, c: usize) -> Option<&[u8]> {
        let len = self.lens[c] as usize;
        if len == 0 {
            return None;
        }
        let start: usize = self.lens[..c].iter().map(|&l| l as usize).sum();
        Some(&self.buf[start..start + len])
    }

    /// Every column's value by index (`None` for unknown).
    pub fn columns(&self) -> [Option<&[u8]>; COLUMNS] {
        let mut out = [None; COLUMNS];
        let mut start = 0usize;
        for (slot, &l) in out.iter_mut().zip(self.lens.iter()) {
            let l = l as usize;
            if l > 0 {
                *slot = Some(&self.buf[start..start + l]);
            }
            start += l;
        }
        out
    }

    /// True when no column is known.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Forgets every value (keeps the buffer).
    pub fn clear(&mut self) {
        self.lens = [0; COLUMNS];
        self.used = 0;
    }

    /// Every column's length and the values back to back (what [`EndContext::set_raw`]
    /// takes).
    pub fn raw(&self) -> (&[u8; COLUMNS], &[u8]) {
        (&self.lens, &self.buf[..self.used as usize])
    }

    /// Every column's value in order (`None` for unknown), for encoders.
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        let mut start = 0usize;
        self.lens.iter().map(move |&l| {
            let s = start;
            start += l as usize;
            (l > 0).then(|| &self.buf[s..s + l as usize])
        })
    }
}

impl std::fmt::Debug for EndContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (c, v) in self.values().enumerate() {
            if let Some(v) = v {
                let name = STANDARD_COLUMNS.get(c).copied().unwrap_or("extra");
                m.entry(&name, &String::from_utf8_lossy(v));
            }
        }
        m.finish()
    }
}

/// Both ends' context (filled in by the worker when the record is produced; `flow` leaves
/// it empty).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct ConnContext {
    pub orig: EndContext,
    pub resp: EndContext,
}

/// The longest prefix of `v` of at most `room` bytes that ends on a UTF-8 character boundary
/// (bytes that are not UTF-8 are cut anywhere).
pub(crate) fn cut_len(v: &[u8], room: usize) -> usize {
    if v.len() <= room {
        return v.len();
    }
    let mut n = room;
    // A continuation byte (10xxxxxx) cannot start a character: back up to one that can.
    while n > 0 && (v[n] & 0xc0) == 0x80 {
        n -= 1;
    }
    if n == 0 {
        room
    } else {
        n
    }
}

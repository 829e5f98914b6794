//! Reading Zeek `conn.log` references and measuring how far our `conn.log` agrees with them.
//!
//! This file is shared by `cargo xtask conformance` (through `#[path]`) and by
//! `tests/conformance.rs`, so it depends on nothing beyond `std` and holds no policy about how
//! the binary is run beyond the argument list. The rules follow `../shared/README.md`
//! ("Reading the Zeek references"): the `### BTest` line is dropped, `ts` and `uid` are ignored,
//! rows are matched as multisets keyed on `(proto, id.orig_h, id.orig_p, id.resp_h, id.resp_p)`,
//! and rows that share a key are paired so that as many fields as possible agree.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// The columns whose agreement we measure, in the order the table prints them. A column is
/// compared only when the reference carries it, so partial references compare fewer.
pub const COMPARED_FIELDS: &[&str] = &[
    "conn_state",
    "history",
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "orig_bytes",
    "resp_bytes",
    "missed_bytes",
    "duration",
    "local_orig",
    "local_resp",
    "service",
    "ip_proto",
    "community_id",
    "id.ctx.vlan",
    "id.ctx.inner_vlan",
];

/// Short column titles for [`COMPARED_FIELDS`], so the table fits a terminal.
const FIELD_TITLES: &[&str] = &[
    "state", "hist", "opkt", "rpkt", "oipb", "ripb", "obyt", "rbyt", "miss", "dur", "lorig",
    "lresp", "svc", "ipp", "cid", "vlan", "ivlan",
];

/// The columns that identify a connection. `proto` is optional because some cut references
/// leave it out; the key then uses the four address columns only.
pub const KEY_FIELDS: &[&str] = &["proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"];

/// Columns of the header-less cut files in `zeek-partial/community-id`. Zeek's tests
/// `community-id-logging.zeek` and `community-id-logging-flipped.zeek` produced them with
/// `zeek-cut id.orig_h id.orig_p id.resp_h id.resp_p proto service community_id` (no `-m`).
pub const COMMUNITY_ID_CUT_COLUMNS: &[&str] = &[
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "community_id",
];

/// Partial sets whose Zeek run used `-C`. Their `RUN.txt` files name the Zeek test but not
/// its command line; `core/conn-size-flip.zeek` runs `zeek -C -b -r ...`, the others do not
/// pass `-C`.
const PARTIAL_SETS_WITH_C: &[&str] = &["conn-size-flip"];

/// Partial variants whose Zeek run loaded a script that changes what nameflow must be told,
/// with the flags that do the same. `vlan-collisions/vlan-fivetuple-key` is part 2 of
/// `policy/frameworks/conn_key/vlan_fivetuple.zeek`, which loads
/// `frameworks/conn_key/vlan_fivetuple` (Zeek's VLAN-aware connection key).
const PARTIAL_SET_FLAGS: &[(&str, &[&str])] = &[(
    "vlan-collisions/vlan-fivetuple-key",
    &["--conn-key", "vlan"],
)];

/// Duration agreement tolerance: Zeek prints microseconds, and we allow 2 ms of difference so
/// that rounding and timestamp resolution do not count as disagreement.
pub const DURATION_TOLERANCE_S: f64 = 0.002;

/// A parse failure, with the 1-based line it happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

/// A parsed log: column names and the rows' raw values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Log {
    /// Parses a Zeek TSV log, a `zeek-cut` output with a plain header line, or (when
    /// `headerless` is given) a `zeek-cut` output without any header.
    ///
    /// The `### BTest` line and all other `#` lines except `#fields` are skipped. Columns with an
    /// empty name (what `zeek-cut -m` writes for a column the log did not have) are kept so that
    /// row widths still line up, but no lookup can find them.
    pub fn parse(text: &str, headerless: Option<&[&str]>) -> Result<Log, ParseError> {
        let mut log = Log::default();
        let mut have_header = false;
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("#fields\t") {
                log.columns = rest.split('\t').map(str::to_owned).collect();
                have_header = true;
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let values: Vec<&str> = line.split('\t').collect();
            if !have_header {
                // A cut file made with `-m` starts with the bare column names; recognise it by
                // the one column every connection log carries.
                if values.contains(&"id.orig_h") {
                    log.columns = values.iter().map(|s| (*s).to_owned()).collect();
                    have_header = true;
                    continue;
                }
                match headerless {
                    Some(cols) => {
                        log.columns = cols.iter().map(|s| (*s).to_owned()).collect();
                        have_header = true;
                    }
                    None => {
                        return Err(ParseError {
                            line: lineno,
                            what: "data before any header (no #fields line and no column-name \
                                   line)"
                                .to_owned(),
                        })
                    }
                }
            }
            if values.len() != log.columns.len() {
                return Err(ParseError {
                    line: lineno,
                    what: format!("{} values but {} columns", values.len(), log.columns.len()),
                });
            }
            log.rows
                .push(values.into_iter().map(str::to_owned).collect());
        }
        Ok(log)
    }

    /// The index of a named column.
    pub fn column(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return None;
        }
        self.columns.iter().position(|c| c == name)
    }
}

/// True when two values of `field` agree under the comparison rules.
pub fn values_agree(field: &str, zeek: &str, ours: &str) -> bool {
    match field {
        "duration" => match (zeek, ours) {
            ("-", "-") => true,
            ("-", _) | (_, "-") => false,
            _ => match (zeek.parse::<f64>(), ours.parse::<f64>()) {
                (Ok(a), Ok(b)) => (a - b).abs() <= DURATION_TOLERANCE_S + 1e-9,
                _ => zeek == ours,
            },
        },
        // `service` is a set: Zeek's print order follows its table hashing, not meaning.
        "service" => service_set(zeek) == service_set(ours),
        _ => zeek == ours,
    }
}

fn service_set(v: &str) -> Vec<&str> {
    if v == "-" || v == "(empty)" {
        return Vec::new();
    }
    let mut items: Vec<&str> = v.split(',').collect();
    items.sort_unstable();
    items
}

/// One mismatch kept as an example for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The connection key as `proto orig_h:orig_p > resp_h:resp_p`.
    pub key: String,
    pub zeek: String,
    pub ours: String,
}

/// Agreement of one field over a set.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTally {
    pub field: &'static str,
    /// Paired rows on which the field agrees.
    pub agree: usize,
    /// Paired rows on which it differs (missing and extra rows are not counted here).
    pub differ: usize,
    /// A few differing pairs, for the report.
    pub examples: Vec<Mismatch>,
}

/// How many mismatch examples each field keeps.
const EXAMPLES_PER_FIELD: usize = 3;

/// The result of comparing our log with one reference.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    /// Reference rows paired with one of ours.
    pub matched: usize,
    /// Reference rows we did not produce.
    pub missing: usize,
    /// Rows we produced that the reference does not have.
    pub extra: usize,
    /// One tally per compared field, in [`COMPARED_FIELDS`] order.
    pub fields: Vec<FieldTally>,
}

impl Comparison {
    /// Every row either side has: a missing or extra row counts as disagreement on every field.
    pub fn rows(&self) -> usize {
        self.matched + self.missing + self.extra
    }

    /// Percent agreement of one field, or `None` when it was not compared. An empty set on both
    /// sides agrees fully.
    pub fn field_pct(&self, field: &str) -> Option<f64> {
        let t = self.fields.iter().find(|t| t.field == field)?;
        Some(pct(t.agree, self.rows()))
    }

    /// Percent agreement over all compared fields of all rows.
    pub fn overall_pct(&self) -> f64 {
        let agree: usize = self.fields.iter().map(|t| t.agree).sum();
        pct(agree, self.rows() * self.fields.len())
    }
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        100.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

/// Compares our log with a reference. Fields are those of [`COMPARED_FIELDS`] the reference
/// carries; a field missing from our log disagrees on every row.
pub fn compare(zeek: &Log, ours: &Log) -> Result<Comparison, String> {
    let key_cols: Vec<&str> = KEY_FIELDS
        .iter()
        .copied()
        .filter(|k| zeek.column(k).is_some())
        .collect();
    if key_cols.len() < 4 {
        return Err(format!(
            "reference lacks the connection id columns (has {:?})",
            zeek.columns
        ));
    }
    let zeek_key: Vec<usize> = key_cols.iter().map(|k| zeek.column(k).unwrap()).collect();
    let our_key: Vec<usize> = key_cols
        .iter()
        .map(|k| {
            ours.column(k)
                .ok_or_else(|| format!("our log lacks the key column {k}"))
        })
        .collect::<Result<_, _>>()?;
    let fields: Vec<(&'static str, usize, Option<usize>)> = COMPARED_FIELDS
        .iter()
        .filter_map(|f| zeek.column(f).map(|zi| (*f, zi, ours.column(f))))
        .collect();

    let mut groups: BTreeMap<Vec<&str>, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, row) in zeek.rows.iter().enumerate() {
        let key = zeek_key.iter().map(|&c| row[c].as_str()).collect();
        groups.entry(key).or_default().0.push(i);
    }
    for (i, row) in ours.rows.iter().enumerate() {
        let key = our_key.iter().map(|&c| row[c].as_str()).collect();
        groups.entry(key).or_default().1.push(i);
    }

    let mut cmp = Comparison {
        fields: fields
            .iter()
            .map(|(f, _, _)| FieldTally {
                field: f,
                agree: 0,
                differ: 0,
                examples: Vec::new(),
            })
            .collect(),
        ..Comparison::default()
    };
    let value = |row: &Vec<String>, col: Option<usize>| -> String {
        col.map_or_else(|| "<no column>".to_owned(), |c| row[c].clone())
    };
    let agreeing = |zr: usize, or: usize| -> usize {
        fields
            .iter()
            .filter(|(f, zi, oi)| {
                oi.is_some_and(|oi| values_agree(f, &zeek.rows[zr][*zi], &ours.rows[or][oi]))
            })
            .count()
    };

    for (key, (zrows, orows)) in &groups {
        let pairs = pair_rows(zrows, orows, agreeing);
        cmp.matched += pairs.len();
        cmp.missing += zrows.len() - pairs.len();
        cmp.extra += orows.len() - pairs.len();
        for (zr, or) in pairs {
            for (t, (f, zi, oi)) in cmp.fields.iter_mut().zip(&fields) {
                let zv = &zeek.rows[zr][*zi];
                let ok = oi.is_some_and(|oi| values_agree(f, zv, &ours.rows[or][oi]));
                if ok {
                    t.agree += 1;
                } else {
                    t.differ += 1;
                    if t.examples.len() < EXAMPLES_PER_FIELD {
                        t.examples.push(Mismatch {
                            key: format_key(&key_cols, key),
                            zeek: zv.clone(),
                            ours: value(&ours.rows[or], *oi),
                        });
                    }
                }
            }
        }
    }
    Ok(cmp)
}

fn format_key(cols: &[&str], key: &[&str]) -> String {
    // The key holds proto first when the reference has it, then the four address columns.
    let off = cols.len() - 4;
    let proto = if off == 1 { key[0] } else { "?" };
    format!(
        "{proto} {}:{} > {}:{}",
        key[off],
        key[off + 1],
        key[off + 2],
        key[off + 3]
    )
}

/// Pairs reference rows with ours within one key, greedily by descending agreement so that a
/// repeated key (the same 5-tuple reused) pairs each reference row with its closest row of ours.
fn pair_rows(
    zrows: &[usize],
    orows: &[usize],
    agreeing: impl Fn(usize, usize) -> usize,
) -> Vec<(usize, usize)> {
    if zrows.is_empty() || orows.is_empty() {
        return Vec::new();
    }
    if zrows.len() == 1 && orows.len() == 1 {
        return vec![(zrows[0], orows[0])];
    }
    let mut scored = Vec::with_capacity(zrows.len() * orows.len());
    for (zi, &zr) in zrows.iter().enumerate() {
        for (oi, &or) in orows.iter().enumerate() {
            scored.push((agreeing(zr, or), zi, oi));
        }
    }
    // Highest score first; ties keep file order on both sides, so the pairing is deterministic.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut zused = vec![false; zrows.len()];
    let mut oused = vec![false; orows.len()];
    let mut pairs = Vec::new();
    for (_, zi, oi) in scored {
        if !zused[zi] && !oused[oi] {
            zused[zi] = true;
            oused[oi] = true;
            pairs.push((zrows[zi], orows[oi]));
            if pairs.len() == zrows.len().min(orows.len()) {
                break;
            }
        }
    }
    pairs
}

/// One reference to compare against: a trace, Zeek's log for it, and how Zeek ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSet {
    /// `folder` for full references, `folder/variant` for partial ones with several cut files.
    pub name: String,
    pub trace: PathBuf,
    pub reference: PathBuf,
    /// Zeek ran with `-C`, so we pass `-C` as well.
    pub ignore_checksums: bool,
    /// Column names for a reference without any header line.
    pub headerless: Option<&'static [&'static str]>,
    /// Further flags that make nameflow run as Zeek did (scripts the reference loaded).
    pub extra_flags: Vec<String>,
}

impl RefSet {
    /// The arguments for `nameflow` that produce a comparable `conn.log` in `out_dir`.
    pub fn nameflow_args(&self, out_dir: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["read".into()];
        if self.ignore_checksums {
            args.push("-C".into());
        }
        args.extend(self.extra_flags.iter().map(OsString::from));
        args.extend([
            "--format".into(),
            "tsv".into(),
            "-o".into(),
            out_dir.as_os_str().to_owned(),
            self.trace.as_os_str().to_owned(),
        ]);
        args
    }

    /// Parses the reference log.
    pub fn load_reference(&self) -> Result<Log, String> {
        let text = std::fs::read_to_string(&self.reference)
            .map_err(|e| format!("cannot read {}: {e}", self.reference.display()))?;
        Log::parse(&text, self.headerless).map_err(|e| format!("{}: {e}", self.reference.display()))
    }
}

/// Each protocol script's contribution to Zeek's `likely_server_ports` (the `ports` each
/// `scripts/base/protocols/<name>/main.zeek` adds), for the protocols the bare runs load.
const PROTOCOL_SERVER_PORTS: &[(&str, &str)] = &[
    ("dns", "53/tcp,53/udp,137/udp,5353/udp,5355/udp"),
    (
        "http",
        "80/tcp,81/tcp,631/tcp,1080/tcp,3128/tcp,8000/tcp,8080/tcp,8888/tcp",
    ),
    (
        "ssl",
        "443/tcp,563/tcp,585/tcp,614/tcp,636/tcp,989/tcp,990/tcp,992/tcp,993/tcp,995/tcp,\
         5223/tcp,443/udp",
    ),
    ("ftp", "21/tcp,2811/tcp"),
    ("ssh", "22/tcp"),
    ("ntp", "123/udp"),
    ("dhcp", "67/udp"),
    ("krb", "88/tcp,88/udp"),
    ("irc", "6666/tcp,6667/tcp,6668/tcp,6669/tcp"),
    ("mysql", "3306/tcp"),
    ("pop3", "110/tcp"),
    ("imap", "143/tcp"),
    ("rdp", "3389/tcp,3389/udp"),
];

/// The UDP tunnel ports the packet-protocol scripts (loaded even by `zeek -b`) register;
/// `teredo-bubble-payload-http` shows a bare run flipping towards 3544.
const TUNNEL_SERVER_PORTS: &str = "2123/udp,2152/udp,3544/udp,4789/udp,5072/udp,6081/udp";

/// For a `RUN.txt` of a bare run (`zeek -b`), the `--likely-server-ports` list of the protocol
/// scripts it loaded: Zeek guesses roles only from the ports of the analyzers it has.
pub fn bare_run_server_ports(run_txt: &str) -> Option<String> {
    let note = run_txt
        .lines()
        .find(|l| l.contains("Command") && l.contains("[bare"))?;
    let note = &note[note.find("[bare")?..];
    let mut protocols: Vec<&str> = Vec::new();
    for word in note.split(|c: char| c.is_whitespace() || c == ';' || c == ']') {
        let Some(rest) = word.strip_prefix("base/protocols/") else {
            continue;
        };
        match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(list) => protocols.extend(list.split(',')),
            None => protocols.push(rest),
        }
    }
    let mut ports = vec![TUNNEL_SERVER_PORTS];
    for p in protocols {
        if let Some((_, list)) = PROTOCOL_SERVER_PORTS.iter().find(|(name, _)| *name == p) {
            ports.push(list);
        }
    }
    Some(ports.join(","))
}

/// True when a `RUN.txt` shows a Zeek command line with `-C` (checksums ignored).
pub fn run_txt_ignores_checksums(run_txt: &str) -> bool {
    run_txt.lines().any(|line| {
        let Some(pos) = line.find("zeek ") else {
            return false;
        };
        // The command ends where the bracketed note about loaded scripts starts.
        let cmd = &line[pos..];
        let cmd = cmd.split('[').next().unwrap_or(cmd);
        cmd.split_whitespace()
            .any(|t| t == "-C" || t == "--no-checksums")
    })
}

fn sorted_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Finds every reference under `shared/conformance`: `zeek/<set>/conn.log` with its trace, and
/// every `zeek-partial/<set>/conn.log.cut*` with the trace its name points at.
pub fn discover(shared: &Path) -> std::io::Result<Vec<RefSet>> {
    let mut sets = Vec::new();
    let full = shared.join("conformance/zeek");
    if full.is_dir() {
        for dir in sorted_dirs(&full)? {
            let reference = dir.join("conn.log");
            if !reference.is_file() {
                continue;
            }
            let Some(trace) = ["trace.pcap", "trace.pcapng", "trace.pcap.gz"]
                .iter()
                .map(|n| dir.join(n))
                .find(|p| p.is_file())
            else {
                continue;
            };
            let run = std::fs::read_to_string(dir.join("RUN.txt")).unwrap_or_default();
            sets.push(RefSet {
                name: file_name(&dir),
                trace,
                reference,
                ignore_checksums: run_txt_ignores_checksums(&run),
                headerless: None,
                extra_flags: bare_run_server_ports(&run)
                    .map(|ports| vec!["--likely-server-ports".to_owned(), ports])
                    .unwrap_or_default(),
            });
        }
    }
    let partial = shared.join("conformance/zeek-partial");
    if partial.is_dir() {
        for dir in sorted_dirs(&partial)? {
            let folder = file_name(&dir);
            let run = std::fs::read_to_string(dir.join("RUN.txt")).unwrap_or_default();
            let ignore_checksums =
                PARTIAL_SETS_WITH_C.contains(&folder.as_str()) || run_txt_ignores_checksums(&run);
            let mut cuts: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && file_name(p).starts_with("conn.log.cut"))
                .collect();
            cuts.sort();
            for reference in cuts {
                let n = file_name(&reference);
                let variant = n["conn.log.cut".len()..].trim_start_matches('.').to_owned();
                let named = dir.join(format!("{variant}.pcap"));
                let trace = if !variant.is_empty() && named.is_file() {
                    named
                } else {
                    dir.join("trace.pcap")
                };
                if !trace.is_file() {
                    continue;
                }
                let name = if variant.is_empty() {
                    folder.clone()
                } else {
                    format!("{folder}/{variant}")
                };
                let extra_flags = PARTIAL_SET_FLAGS
                    .iter()
                    .find(|(set, _)| *set == name)
                    .map_or(&[][..], |(_, flags)| *flags)
                    .iter()
                    .map(|f| (*f).to_owned())
                    .collect();
                sets.push(RefSet {
                    name,
                    trace,
                    reference,
                    ignore_checksums,
                    headerless: (folder == "community-id").then_some(COMMUNITY_ID_CUT_COLUMNS),
                    extra_flags,
                });
            }
        }
    }
    Ok(sets)
}

/// Renders the per-set × per-field agreement table. Cells are percentages; `.` marks a field
/// the reference does not carry.
pub fn render_table(results: &[(String, Comparison)]) -> String {
    let name_w = results
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut s = String::new();
    let _ = write!(s, "{:<name_w$}", "set");
    for t in FIELD_TITLES {
        let _ = write!(s, " {t:>5}");
    }
    let _ = writeln!(
        s,
        " {:>6} {:>6} {:>6} {:>7}",
        "match", "miss", "extra", "overall"
    );
    for (name, c) in results {
        let _ = write!(s, "{name:<name_w$}");
        for f in COMPARED_FIELDS {
            match c.field_pct(f) {
                Some(p) => {
                    let _ = write!(s, " {:>5}", fmt_pct(p));
                }
                None => {
                    let _ = write!(s, " {:>5}", ".");
                }
            }
        }
        let _ = writeln!(
            s,
            " {:>6} {:>6} {:>6} {:>6.1}%",
            c.matched,
            c.missing,
            c.extra,
            c.overall_pct()
        );
    }
    s
}

/// Lists a few mismatches per field for each set, for finding out why agreement is short.
pub fn render_mismatches(results: &[(String, Comparison)]) -> String {
    let mut s = String::new();
    for (name, c) in results {
        for t in &c.fields {
            for m in &t.examples {
                let _ = writeln!(
                    s,
                    "{name}: {}: {}: zeek {:?}, ours {:?}",
                    t.field, m.key, m.zeek, m.ours
                );
            }
        }
    }
    s
}

/// A percentage in at most five characters: `100`, `99.9`, `0`.
fn fmt_pct(p: f64) -> String {
    if (99.95..100.0).contains(&p) {
        // Never print a near miss as a perfect score.
        "99.9".to_owned()
    } else if p == 100.0 || p == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

/// The floor file's pseudo-field for the overall agreement of a set.
pub const OVERALL: &str = "overall";

/// A floor: the agreement a set has reached on a field, which must not drop.
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    pub set: String,
    pub field: String,
    pub pct: f64,
}

/// Rounds an agreement down to the tenth of a percent written in the floor file, so that the
/// run that blessed it passes again.
pub fn floor_of(pct: f64) -> f64 {
    (pct * 10.0 + 1e-9).floor() / 10.0
}

/// The floors one comparison reaches: one per compared field and one for the overall figure.
pub fn floors_for(set: &str, c: &Comparison) -> Vec<Floor> {
    let mut out: Vec<Floor> = c
        .fields
        .iter()
        .map(|t| Floor {
            set: set.to_owned(),
            field: t.field.to_owned(),
            pct: floor_of(c.field_pct(t.field).unwrap_or(0.0)),
        })
        .collect();
    out.push(Floor {
        set: set.to_owned(),
        field: OVERALL.to_owned(),
        pct: floor_of(c.overall_pct()),
    });
    out
}

/// Parses `tests/conformance-floor.tsv`: `set<TAB>field<TAB>percent`, `#` comments.
pub fn parse_floors(text: &str) -> Result<Vec<Floor>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('\t').collect();
        let err = |what: String| ParseError { line: i + 1, what };
        if parts.len() != 3 {
            return Err(err(format!(
                "expected set<TAB>field<TAB>percent, got {} columns",
                parts.len()
            )));
        }
        let pct = parts[2]
            .parse::<f64>()
            .map_err(|e| err(format!("bad percentage {:?}: {e}", parts[2])))?;
        out.push(Floor {
            set: parts[0].to_owned(),
            field: parts[1].to_owned(),
            pct,
        });
    }
    Ok(out)
}

/// Writes floors in the file format [`parse_floors`] reads, sorted by set then field order.
pub fn render_floors(floors: &[Floor]) -> String {
    let mut sorted: Vec<&Floor> = floors.iter().collect();
    let rank = |f: &str| {
        COMPARED_FIELDS
            .iter()
            .position(|x| *x == f)
            .unwrap_or(COMPARED_FIELDS.len())
    };
    sorted.sort_by(|a, b| {
        a.set
            .cmp(&b.set)
            .then(rank(&a.field).cmp(&rank(&b.field)))
            .then(a.field.cmp(&b.field))
    });
    let mut s = String::from(
        "# Conformance floors: the agreement with Zeek (percent) each set has reached per field.\n\
         # tests/conformance.rs fails when a field drops below its floor.\n\
         # Written by `cargo xtask conformance --bless`; see docs/conformance.md.\n\
         # set\tfield\tpercent\n",
    );
    for f in sorted {
        let _ = writeln!(s, "{}\t{}\t{:.1}", f.set, f.field, f.pct);
    }
    s
}

/// Replaces the floors of the sets in `new` and keeps the others.
pub fn merge_floors(old: &[Floor], new: &[Floor]) -> Vec<Floor> {
    let mut out: Vec<Floor> = old
        .iter()
        .filter(|f| !new.iter().any(|n| n.set == f.set))
        .cloned()
        .collect();
    out.extend(new.iter().cloned());
    out
}

/// The floors a comparison falls below, as `(field, floor, reached)`.
pub fn below_floor(set: &str, c: &Comparison, floors: &[Floor]) -> Vec<(String, f64, f64)> {
    floors
        .iter()
        .filter(|f| f.set == set)
        .filter_map(|f| {
            let reached = if f.field == OVERALL {
                c.overall_pct()
            } else {
                // A field the floor names but the comparison no longer has counts as 0%.
                c.field_pct(&f.field).unwrap_or(0.0)
            };
            // The floor is rounded down to a tenth, so only a real drop falls below it.
            (reached + 1e-9 < f.pct).then(|| (f.field.clone(), f.pct, reached))
        })
        .collect()
}

/// The data lines of a log, sorted, for comparing two runs of the same trace.
pub fn sorted_data_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "### BTest baseline data generated by btest-diff. Do not edit.\n\
#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n\
#open XXXX-XX-XX-XX-XX-XX\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\t\
orig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\t\
orig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tip_proto\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\t\
bool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tcount\n";

    fn row(orig_p: u16, service: &str, duration: &str, history: &str) -> String {
        format!(
            "XXXXXXXXXX.XXXXXX\tCabc\t10.0.0.1\t{orig_p}\t10.0.0.2\t80\ttcp\t{service}\t\
             {duration}\t10\t20\tSF\tT\tT\t0\t{history}\t3\t160\t3\t170\t-\t6\n"
        )
    }

    fn log(rows: &[String]) -> Log {
        let text = format!("{HEADER}{}#close XXXX-XX-XX-XX-XX-XX\n", rows.concat());
        Log::parse(&text, None).expect("the test log should parse")
    }

    #[test]
    fn parses_header_and_rows_and_skips_btest_line() {
        let l = log(&[row(1000, "http", "1.000000", "ShADadFf")]);
        assert_eq!(l.columns.len(), 22, "all #fields columns should be read");
        assert_eq!(l.rows.len(), 1, "only the data line is a row");
        let h = l.column("history").expect("history column");
        assert_eq!(l.rows[0][h], "ShADadFf");
    }

    #[test]
    fn rejects_rows_with_the_wrong_width() {
        let text = format!("{HEADER}a\tb\n");
        let err = Log::parse(&text, None).expect_err("a two-value row must be refused");
        assert_eq!(err.line, 10, "the error should name the data line");
    }

    #[test]
    fn identical_logs_agree_fully() {
        let rows = [
            row(1000, "http", "1.000000", "ShADadFf"),
            row(1001, "-", "-", "S"),
        ];
        let c = compare(&log(&rows), &log(&rows)).expect("compare");
        assert_eq!((c.matched, c.missing, c.extra), (2, 0, 0));
        assert_eq!(c.overall_pct(), 100.0, "identical logs should agree fully");
        assert!(
            c.field_pct("community_id").is_none(),
            "not in the reference"
        );
        assert_eq!(c.fields.len(), 14);
    }

    #[test]
    fn ts_and_uid_are_ignored() {
        let ours = row(1000, "http", "1.000000", "ShADadFf")
            .replacen("XXXXXXXXXX.XXXXXX", "1300000000.123456", 1)
            .replacen("Cabc", "Cxyz", 1);
        let c = compare(
            &log(&[row(1000, "http", "1.000000", "ShADadFf")]),
            &log(&[ours]),
        )
        .expect("compare");
        assert_eq!(c.overall_pct(), 100.0, "ts and uid must not be compared");
    }

    #[test]
    fn duration_has_a_two_millisecond_tolerance_and_unset_matches_only_unset() {
        assert!(values_agree("duration", "1.000000", "1.001999"));
        assert!(!values_agree("duration", "1.000000", "1.002500"));
        assert!(values_agree("duration", "-", "-"));
        assert!(!values_agree("duration", "-", "0.000001"));
        assert!(!values_agree("duration", "0.5", "-"));
    }

    #[test]
    fn service_compares_as_a_set() {
        assert!(values_agree("service", "imap,ssl", "ssl,imap"));
        assert!(!values_agree("service", "imap,ssl", "imap"));
        assert!(values_agree("service", "-", "-"));
    }

    #[test]
    fn missing_and_extra_rows_count_against_every_field() {
        let zeek = log(&[row(1000, "-", "-", "S"), row(1001, "-", "-", "S")]);
        let ours = log(&[row(1000, "-", "-", "S"), row(2000, "-", "-", "S")]);
        let c = compare(&zeek, &ours).expect("compare");
        assert_eq!((c.matched, c.missing, c.extra), (1, 1, 1));
        let p = c.field_pct("history").expect("history compared");
        assert!((p - 100.0 / 3.0).abs() < 1e-9, "1 of 3 rows agree, got {p}");
    }

    #[test]
    fn repeated_keys_pair_rows_by_best_agreement() {
        // Zeek's order and ours differ; greedy pairing must still match like with like.
        let zeek = log(&[
            row(1000, "-", "-", "S"),
            row(1000, "http", "2.0", "ShADadFf"),
        ]);
        let ours = log(&[
            row(1000, "http", "2.0", "ShADadFf"),
            row(1000, "-", "-", "S"),
        ]);
        let c = compare(&zeek, &ours).expect("compare");
        assert_eq!(c.matched, 2);
        assert_eq!(c.overall_pct(), 100.0, "rows should pair by content");
    }

    #[test]
    fn mismatches_are_reported_with_their_key() {
        let zeek = log(&[row(1000, "-", "-", "ShAF")]);
        let ours = log(&[row(1000, "-", "-", "ShAf")]);
        let c = compare(&zeek, &ours).expect("compare");
        let t = c.fields.iter().find(|t| t.field == "history").unwrap();
        assert_eq!(t.differ, 1);
        assert_eq!(t.examples[0].key, "tcp 10.0.0.1:1000 > 10.0.0.2:80");
        assert!(render_mismatches(&[("s".into(), c)]).contains("zeek \"ShAF\", ours \"ShAf\""));
    }

    #[test]
    fn a_field_our_log_lacks_disagrees() {
        let zeek = log(&[row(1000, "-", "-", "S")]);
        let mut ours = zeek.clone();
        let h = ours.column("history").unwrap();
        ours.columns[h] = "something_else".into();
        let c = compare(&zeek, &ours).expect("compare");
        assert_eq!(c.field_pct("history"), Some(0.0));
        assert_eq!(c.field_pct("conn_state"), Some(100.0));
    }

    #[test]
    fn cut_files_with_plain_headers_and_empty_columns_parse() {
        let text = "### BTest baseline data\n\
ts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\t\t\torig_pkts\tresp_pkts\tservice\n\
XXXXXXXXXX.XXXXXX\tC1\t141.142.228.5\t59856\t192.150.187.43\t80\t\t\t21\t21\thttp\n";
        let zeek = Log::parse(text, None).expect("cut file should parse");
        assert_eq!(zeek.rows.len(), 1);
        assert_eq!(
            zeek.column(""),
            None,
            "empty column names are not addressable"
        );
        // Our full log carries proto, but the key must fall back to the four address columns.
        let ours = log(&[row(59856, "http", "1.0", "S")
            .replace("10.0.0.1", "141.142.228.5")
            .replace("10.0.0.2", "192.150.187.43")
            .replace("\t3\t160\t3\t170", "\t21\t160\t21\t170")]);
        let c = compare(&zeek, &ours).expect("compare");
        assert_eq!(c.matched, 1, "the 4-tuple key should match");
        assert_eq!(c.fields.len(), 3, "orig_pkts, resp_pkts, service");
        assert_eq!(c.overall_pct(), 100.0);
    }

    #[test]
    fn headerless_cut_files_take_the_given_columns() {
        let text = "### BTest\n141.142.228.5\t59856\t192.150.187.43\t80\ttcp\t-\t1:yvyB8h+3dnggTZW0UEITWCst97w=\n";
        assert!(Log::parse(text, None).is_err(), "no header and no columns");
        let l = Log::parse(text, Some(COMMUNITY_ID_CUT_COLUMNS)).expect("parse");
        assert_eq!(
            l.rows[0][l.column("community_id").unwrap()],
            "1:yvyB8h+3dnggTZW0UEITWCst97w="
        );
    }

    #[test]
    fn bare_runs_get_the_loaded_protocols_server_ports() {
        let bare = "# Command that produced ...: zeek -b -r x.pcap t.zeek   [bare; @load \
                    base/protocols/{conn,ssl,irc}]";
        let ports = bare_run_server_ports(bare).expect("a bare run");
        assert!(
            ports.contains("443/tcp") && ports.contains("6667/tcp"),
            "{ports}"
        );
        assert!(ports.contains("4789/udp"), "tunnel ports stay: {ports}");
        assert!(!ports.contains("80/tcp"), "http was not loaded: {ports}");
        let conn_only = "# Command ...: zeek -b -r x.pcap   [bare; @load base/protocols/conn]";
        assert_eq!(
            bare_run_server_ports(conn_only).as_deref(),
            Some(TUNNEL_SERVER_PORTS)
        );
        let default = "# Command ...: zeek -r x.pcap t.zeek   [default scripts]";
        assert_eq!(bare_run_server_ports(default), None);
    }

    #[test]
    fn run_txt_flag_detection() {
        assert!(run_txt_ignores_checksums(
            "# Command ...: zeek -b -C -r llc.pcap mac-logging.zeek   [bare; ...]"
        ));
        assert!(!run_txt_ignores_checksums(
            "# Command ...: zeek -r wikipedia.pcap basic.zeek   [default scripts (-C not used)]"
        ));
    }

    #[test]
    fn floors_round_trip_and_detect_drops() {
        let zeek = log(&[row(1000, "-", "-", "S"), row(1001, "-", "-", "S")]);
        let ours = log(&[row(1000, "-", "-", "S"), row(1001, "-", "-", "SA")]);
        let c = compare(&zeek, &ours).expect("compare");
        let floors = floors_for("set-a", &c);
        let text = render_floors(&floors);
        let back = parse_floors(&text).expect("floors should parse back");
        assert_eq!(back.len(), 15, "14 fields and overall");
        assert!(back.iter().any(|f| f.field == "history" && f.pct == 50.0));
        assert!(
            below_floor("set-a", &c, &back).is_empty(),
            "blessed run passes"
        );
        let worse = compare(&zeek, &log(&[row(1000, "-", "-", "SA")])).expect("compare");
        let drops = below_floor("set-a", &worse, &back);
        assert!(drops.iter().any(|(f, _, _)| f == "conn_state"), "{drops:?}");
        let merged = merge_floors(
            &back,
            &[Floor {
                set: "set-b".into(),
                field: "history".into(),
                pct: 1.0,
            }],
        );
        assert_eq!(merged.len(), 16);
    }

    #[test]
    fn floor_rounds_down() {
        assert_eq!(floor_of(66.666), 66.6);
        assert_eq!(floor_of(100.0), 100.0);
    }

    #[test]
    fn table_marks_uncompared_fields() {
        let zeek = log(&[row(1000, "-", "-", "S")]);
        let table = render_table(&[("wikipedia".into(), compare(&zeek, &zeek).unwrap())]);
        assert!(table.starts_with("set"), "{table}");
        assert!(table.contains("wikipedia"), "{table}");
        assert!(table.contains("100.0%"), "{table}");
    }

    /// Every shared reference must parse and compare with itself at 100%, which checks the
    /// parser on the real files (FDDI's extra columns, cut files, repeated keys).
    #[test]
    fn shared_references_parse_and_self_agree() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
        let shared = if shared.is_dir() {
            shared
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
        };
        if !shared.is_dir() {
            eprintln!("skipped: no ../shared beside the workspace");
            return;
        }
        let sets = discover(&shared).expect("discover");
        assert!(sets.len() >= 20, "expected every reference, found {sets:?}");
        for set in &sets {
            let l = set.load_reference().unwrap_or_else(|e| panic!("{e}"));
            assert!(!l.rows.is_empty(), "{}: no rows", set.name);
            let c = compare(&l, &l).unwrap_or_else(|e| panic!("{}: {e}", set.name));
            assert_eq!(
                c.overall_pct(),
                100.0,
                "{} does not agree with itself",
                set.name
            );
            assert_eq!(c.matched, l.rows.len(), "{}", set.name);
        }
        let fddi = sets
            .iter()
            .find(|s| s.name == "fddi-llc-1333-conns")
            .expect("fddi set");
        assert!(fddi.ignore_checksums, "fddi ran with -C");
        let wiki = sets
            .iter()
            .find(|s| s.name == "wikipedia-dns-http")
            .expect("wikipedia set");
        assert!(!wiki.ignore_checksums, "wikipedia ran without -C");
        assert!(sets.iter().any(|s| s.name == "community-id/http-get"));
    }
}

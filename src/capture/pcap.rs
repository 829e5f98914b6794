//! Replay of pcap and pcapng files: several files in order as one stream, `-` for stdin, gzip
//! recognised by its magic bytes.
//!
//! The reader owns one byte buffer that every frame is read into and borrowed from, so the
//! steady state allocates nothing: the buffer only grows when a block larger than any before
//! it arrives, up to a hard bound. File and interface headers (rare) are parsed with the
//! `pcap-parser` crate; packet records are parsed here from their fixed layouts, because the
//! crate allocates a `Vec` for the options of every enhanced packet block and does not know the
//! obsolete packet block.
//!
//! Damage is reported with the byte offset of the record it starts in, after every frame
//! before it was returned: a file that ends inside a record is [`CaptureError::Truncated`], a
//! record whose lengths cannot be right is [`CaptureError::Corrupt`]. For gzip files the offset
//! counts decompressed bytes. After an error the reader abandons that file; calling
//! [`FrameSource::next_frame`] again continues with the next file, so the caller decides
//! whether damage stops the run.

use super::{CaptureError, Frame, FrameSource};
use crate::decode::LinkType;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The largest captured length libpcap accepts for a packet (`MAXIMUM_SNAPLEN`); a longer
/// record is corrupt unless the file's own snap length says otherwise.
pub const MAX_SNAPLEN: u32 = 262_144;

/// The largest block or record held in memory. A packet block cannot need more; larger blocks
/// of types we do not use are skipped without being buffered.
const MAX_BLOCK: usize = 16 << 20;

/// Initial buffer size: room for many packets per read system call.
const INITIAL_BUF: usize = 1 << 20;

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;

/// Where the next file comes from.
enum Input {
    Path(PathBuf),
    Reader(PathBuf, Box<dyn Read + Send>),
}

/// A pcapng interface: its link type and how its timestamps convert to nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    res: TsRes,
    offset_s: i64,
}

/// Units of a pcapng timestamp.
#[derive(Clone, Copy, Debug)]
enum TsRes {
    /// 10^-n seconds.
    Dec(u32),
    /// 2^-n seconds.
    Bin(u32),
}

impl TsRes {
    fn from_raw(raw: u8) -> Option<TsRes> {
        if raw & 0x80 == 0 {
            (raw <= 19).then_some(TsRes::Dec(u32::from(raw)))
        } else {
            let n = u32::from(raw & 0x7f);
            (n <= 63).then_some(TsRes::Bin(n))
        }
    }

    fn to_ns(self, units: u64, offset_s: i64) -> u64 {
        let ns: u128 = match self {
            TsRes::Dec(n) if n <= 9 => u128::from(units) * 10u128.pow(9 - n),
            TsRes::Dec(n) => u128::from(units) / 10u128.pow(n - 9),
            TsRes::Bin(n) => (u128::from(units) * 1_000_000_000) >> n,
        };
        let ns = ns as i128 + i128::from(offset_s) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// The layout of the file being read.
enum Layout {
    Legacy {
        big_endian: bool,
        nanos: bool,
        /// The "modified" (Kuznetzov) format has 8 more bytes per record header.
        header_len: usize,
        link: LinkType,
        max_caplen: u32,
    },
    Ng {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// Where a frame lies in the buffer, found before the buffer is borrowed for returning it.
struct FrameAt {
    ts_ns: u64,
    link: LinkType,
    start: usize,
    len: usize,
    wire_len: u32,
}

/// What reading the next record gave.
enum Step {
    Frame(FrameAt),
    /// A block that carries no frame (interface, statistics, unknown ...).
    Skipped,
    /// The file ended cleanly at a record boundary.
    End,
}

/// How far a [`PcapReader`] has got, for a progress line drawn by another thread. The reader
/// publishes bytes once per chunk read from the file (64 KiB) and frames once per 1024 frames
/// and at the end of each file, with plain stores (it is the only writer), so the packet path
/// pays nothing measurable.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// Bytes read from the input files as stored (compressed bytes for gzip), so that they
    /// compare with the files' sizes.
    pub bytes: AtomicU64,
    /// Frames read.
    pub frames: AtomicU64,
}

/// A file as read, counting its bytes into a [`ReadProgress`].
struct Counted<R> {
    inner: R,
    /// Bytes of the earlier files plus this one's so far.
    total: u64,
    progress: Arc<ReadProgress>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        self.progress.bytes.store(self.total, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads pcap/pcapng files in order as one stream.
pub struct PcapReader {
    pending: VecDeque<Input>,
    /// The open file, if any.
    src: Option<Box<dyn Read + Send>>,
    path: PathBuf,
    layout: Layout,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Time of the last frame, used for simple packet blocks, which carry none.
    last_ts_ns: u64,
    /// Where progress is published, if anyone watches.
    progress: Option<Arc<ReadProgress>>,
    /// Frames read so far, published every 1024.
    frames: u64,
}

impl PcapReader {
    /// Opens `paths` to be read in order as one stream (`-` is stdin). Every named file must
    /// exist; the first is opened and its header checked at once, the others when reached.
    pub fn open(paths: &[PathBuf]) -> Result<PcapReader, CaptureError> {
        Self::open_with_progress(paths, None)
    }

    /// [`PcapReader::open`], publishing how far it has got into `progress`.
    pub fn open_with_progress(
        paths: &[PathBuf],
        progress: Option<Arc<ReadProgress>>,
    ) -> Result<PcapReader, CaptureError> {
        for p in paths {
            if p.as_os_str() != "-" {
                std::fs::metadata(p).map_err(|source| CaptureError::Open {
                    path: p.clone(),
                    source,
                })?;
            }
        }
        Self::with_inputs(paths.iter().cloned().map(Input::Path).collect(), progress)
    }

    /// Reads one capture from any reader (`name` is used in error messages). For tests and for
    /// callers that already hold the bytes.
    pub fn from_reader(
        name: impl Into<PathBuf>,
        reader: impl Read + Send + 'static,
    ) -> Result<PcapReader, CaptureError> {
        Self::with_inputs(
            VecDeque::from([Input::Reader(name.into(), Box::new(reader))]),
            None,
        )
    }

    fn with_inputs(
        pending: VecDeque<Input>,
        progress: Option<Arc<ReadProgress>>,
    ) -> Result<PcapReader, CaptureError> {
        let mut r = PcapReader {
            pending,
            src: None,
            path: PathBuf::new(),
            layout: Layout::Ng {
                big_endian: false,
                interfaces: Vec::new(),
            },
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            last_ts_ns: 0,
            progress,
            frames: 0,
        };
        if !r.pending.is_empty() {
            r.open_next()?;
        }
        Ok(r)
    }

    /// The file being read (empty before the first and after the last).
    pub fn current_path(&self) -> &Path {
        &self.path
    }

    /// Opens the next pending input and reads its file header.
    fn open_next(&mut self) -> Result<(), CaptureError> {
        let Some(input) = self.pending.pop_front() else {
            return Ok(());
        };
        let (path, raw): (PathBuf, Box<dyn Read + Send>) = match input {
            Input::Path(p) if p.as_os_str() == "-" => (p, Box::new(std::io::stdin())),
            Input::Path(p) => match std::fs::File::open(&p) {
                Ok(f) => (p, Box::new(f)),
                Err(source) => return Err(CaptureError::Open { path: p, source }),
            },
            Input::Reader(p, r) => (p, r),
        };
        let raw: Box<dyn Read + Send> = match &self.progress {
            Some(progress) => {
                progress.frames.store(self.frames, Ordering::Relaxed);
                Box::new(Counted {
                    inner: raw,
                    total: progress.bytes.load(Ordering::Relaxed),
                    progress: progress.clone(),
                })
            }
            None => raw,
        };
        self.path = path;
        self.start = 0;
        self.end = 0;
        self.eof = false;
        self.offset = 0;
        let mut br = BufReader::with_capacity(64 << 10, raw);
        // Gzip is recognised by its magic bytes, whatever the file is called.
        let gz = loop {
            match br.fill_buf() {
                Ok(b) => break b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            }
        };
        self.src = Some(if gz {
            Box::new(flate2::read::MultiGzDecoder::new(br))
        } else {
            Box::new(br)
        });
        let result = self.read_file_header();
        if result.is_err() {
            self.src = None;
        }
        result
    }

    fn read_file_header(&mut self) -> Result<(), CaptureError> {
        if !self.fill(4)? {
            if self.end == 0 || is_magic_prefix(&self.buf[..self.end]) {
                return Err(self.truncated());
            }
            return Err(self.not_pcap());
        }
        let magic: [u8; 4] = self.buf[0..4].try_into().expect("4 bytes");
        if u32::from_le_bytes(magic) == PCAPNG_SHB {
            self.layout = Layout::Ng {
                big_endian: false,
                interfaces: Vec::new(),
            };
            // The section header block is read as the first block.
            return Ok(());
        }
        let m = u32::from_le_bytes(magic);
        if !matches!(
            m,
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34 | 0xd4c3_b2a1 | 0x4d3c_b2a1
        ) {
            return Err(self.not_pcap());
        }
        if !self.fill(24)? {
            return Err(self.truncated());
        }
        let header = match pcap_parser::pcap::parse_pcap_header(&self.buf[..24]) {
            Ok((_, h)) => h,
            Err(_) => return Err(self.not_pcap()),
        };
        let snaplen = header.snaplen;
        self.layout = Layout::Legacy {
            big_endian: header.is_bigendian(),
            nanos: header.is_nanosecond_precision(),
            header_len: if header.is_modified_format() { 24 } else { 16 },
            link: LinkType(header.network.0 as u32),
            max_caplen: snaplen.clamp(MAX_SNAPLEN, MAX_BLOCK as u32),
        };
        self.consume(24);
        Ok(())
    }

    /// Makes `n` bytes available at `buf[start..]`, reading as needed. Returns false when the
    /// input ends first.
    fn fill(&mut self, n: usize) -> Result<bool, CaptureError> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        if self.start + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if n > self.buf.len() {
                // Rare: a block larger than any before it; callers bound `n` by MAX_BLOCK.
                self.buf.resize(n.next_power_of_two(), 0);
            }
        }
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            let src = self
                .src
                .as_mut()
                .expect("fill is only called on an open file");
            match src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// Skips `n` bytes of a block too large to hold, reading it piecewise.
    fn skip(&mut self, mut n: usize) -> Result<bool, CaptureError> {
        let record = self.offset;
        while n > 0 {
            if self.start == self.end && !self.fill(1)? {
                self.offset = record;
                return Ok(false);
            }
            let k = n.min(self.end - self.start);
            self.start += k;
            n -= k;
        }
        // `consume` was bypassed above; account for the whole block at once.
        self.offset = record;
        Ok(true)
    }

    fn truncated(&self) -> CaptureError {
        CaptureError::Truncated {
            path: self.path.clone(),
            offset: self.offset,
        }
    }

    fn not_pcap(&self) -> CaptureError {
        CaptureError::NotPcap {
            path: self.path.clone(),
        }
    }

    fn corrupt(&self, what: String) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            what,
        }
    }

    /// Maps a read error: a gzip stream that ends early is a truncated file, a damaged one is
    /// corrupt, anything else is an I/O failure.
    fn io_error(&self, e: std::io::Error) -> CaptureError {
        match e.kind() {
            ErrorKind::UnexpectedEof => self.truncated(),
            ErrorKind::InvalidData | ErrorKind::InvalidInput => {
                self.corrupt(format!("compressed data is damaged ({e})"))
            }
            _ => CaptureError::Io {
                path: self.path.clone(),
                offset: self.offset,
                source: e,
            },
        }
    }

    fn u32_at(&self, at: usize, big_endian: bool) -> u32 {
        let b: [u8; 4] = self.buf[self.start + at..self.start + at + 4]
            .try_into()
            .expect("4 bytes");
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Reads one record of the current file.
    fn step(&mut self) -> Result<Step, CaptureError> {
        match self.layout {
            Layout::Legacy { .. } => self.step_legacy(),
            Layout::Ng { .. } => self.step_ng(),
        }
    }

    fn step_legacy(&mut self) -> Result<Step, CaptureError> {
        let Layout::Legacy {
            big_endian,
            nanos,
            header_len,
            link,
            max_caplen,
        } = self.layout
        else {
            unreachable!("step_legacy on a pcapng file")
        };
        if !self.fill(header_len)? {
            return if self.start == self.end {
                Ok(Step::End)
            } else {
                Err(self.truncated())
            };
        }
        let secs = u64::from(self.u32_at(0, big_endian));
        let frac = u64::from(self.u32_at(4, big_endian));
        let caplen = self.u32_at(8, big_endian);
        let wire_len = self.u32_at(12, big_endian);
        if caplen > max_caplen {
            return Err(self.corrupt(format!(
                "record claims {caplen} captured bytes, more than the limit of {max_caplen}"
            )));
        }
        let total = header_len + caplen as usize;
        if !self.fill(total)? {
            return Err(self.truncated());
        }
        if !link.is_supported() {
            return Err(self.unsupported(link));
        }
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1_000 };
        let at = FrameAt {
            ts_ns,
            link,
            start: self.start + header_len,
            len: caplen as usize,
            wire_len: wire_len.max(caplen),
        };
        self.consume(total);
        Ok(Step::Frame(at))
    }

    fn unsupported(&self, link: LinkType) -> CaptureError {
        CaptureError::UnsupportedLink {
            path: self.path.clone(),
            linktype: link.0,
        }
    }

    fn step_ng(&mut self) -> Result<Step, CaptureError> {
        let Layout::Ng {
            mut big_endian,
            ref mut interfaces,
        } = self.layout
        else {
            unreachable!("step_ng on a pcap file")
        };
        let n_ifaces = interfaces.len();
        if !self.fill(8)? {
            return if self.start == self.end {
                Ok(Step::End)
            } else {
                Err(self.truncated())
            };
        }
        let mut ty = self.u32_at(0, big_endian);
        if ty == PCAPNG_SHB {
            // A new section may change the byte order; its byte-order magic says which.
            if !self.fill(12)? {
                return Err(self.truncated());
            }
            big_endian = match self.u32_at(8, false) {
                0x1a2b_3c4d => false,
                0x4d3c_2b1a => true,
                other => {
                    return Err(if self.offset == 0 {
                        self.not_pcap()
                    } else {
                        self.corrupt(format!("section header byte-order magic {other:#010x}"))
                    })
                }
            };
        } else if self.offset == 0 {
            return Err(self.not_pcap());
        }
        ty = self.u32_at(0, big_endian);
        let len = self.u32_at(4, big_endian) as usize;
        if len < 12 || len % 4 != 0 {
            return Err(self.corrupt(format!(
                "block length {len} is not a multiple of 4 of at least 12"
            )));
        }
        let needed = matches!(
            ty,
            PCAPNG_SHB | PCAPNG_IDB | PCAPNG_PB | PCAPNG_SPB | PCAPNG_EPB
        );
        if len > MAX_BLOCK {
            if needed {
                return Err(self.corrupt(format!("block of type {ty} claims {len} bytes")));
            }
            return if self.skip(len)? {
                self.offset += len as u64;
                Ok(Step::Skipped)
            } else {
                Err(self.truncated())
            };
        }
        if !self.fill(len)? {
            return Err(self.truncated());
        }
        if self.u32_at(len - 4, big_endian) as usize != len {
            return Err(self.corrupt(format!(
                "block of type {ty} has a trailing length different from its leading length {len}"
            )));
        }
        let block = &self.buf[self.start..self.start + len];
        let step = match ty {
            PCAPNG_SHB => {
                pcap_parser::pcapng::parse_sectionheaderblock(block)
                    .map_err(|_| self.corrupt("section header block does not parse".to_owned()))?;
                self.layout = Layout::Ng {
                    big_endian,
                    interfaces: Vec::new(),
                };
                Step::Skipped
            }
            PCAPNG_IDB => {
                let parsed = if big_endian {
                    pcap_parser::pcapng::parse_interfacedescriptionblock_be(block)
                } else {
                    pcap_parser::pcapng::parse_interfacedescriptionblock_le(block)
                };
                let idb = match parsed {
                    Ok((_, idb)) => idb,
                    Err(_) => {
                        return Err(
                            self.corrupt("interface description block does not parse".to_owned())
                        )
                    }
                };
                let Some(res) = TsRes::from_raw(idb.if_tsresol) else {
                    return Err(self.corrupt(format!(
                        "interface time resolution {:#04x} is out of range",
                        idb.if_tsresol
                    )));
                };
                let iface = Interface {
                    link: LinkType(idb.linktype.0 as u32),
                    snaplen: idb.snaplen,
                    res,
                    offset_s: tsoffset(&idb, big_endian),
                };
                if let Layout::Ng { interfaces, .. } = &mut self.layout {
                    interfaces.push(iface);
                }
                Step::Skipped
            }
            PCAPNG_EPB | PCAPNG_PB => {
                if len < 32 {
                    return Err(self.corrupt(format!("packet block of {len} bytes is too short")));
                }
                let (if_id, ts_hi, ts_lo) = if ty == PCAPNG_EPB {
                    (
                        self.u32_at(8, big_endian) as usize,
                        self.u32_at(12, big_endian),
                        self.u32_at(16, big_endian),
                    )
                } else {
                    let raw = self.u32_at(8, big_endian);
                    // The obsolete block has a 16-bit interface id followed by a drop count.
                    let id = if big_endian { raw >> 16 } else { raw & 0xffff };
                    (
                        id as usize,
                        self.u32_at(12, big_endian),
                        self.u32_at(16, big_endian),
                    )
                };
                let caplen = self.u32_at(20, big_endian);
                let wire_len = self.u32_at(24, big_endian);
                if caplen as usize > len - 32 {
                    return Err(self.corrupt(format!(
                        "packet claims {caplen} captured bytes in a block of {len}"
                    )));
                }
                let Some(iface) = self.iface(if_id, n_ifaces) else {
                    return Err(self.corrupt(format!(
                        "packet names interface {if_id}, but the section describes {n_ifaces}"
                    )));
                };
                if caplen > iface.snaplen.clamp(MAX_SNAPLEN, MAX_BLOCK as u32) {
                    return Err(self.corrupt(format!(
                        "packet claims {caplen} captured bytes, more than the limit"
                    )));
                }
                if !iface.link.is_supported() {
                    return Err(self.unsupported(iface.link));
                }
                let units = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
                Step::Frame(FrameAt {
                    ts_ns: iface.res.to_ns(units, iface.offset_s),
                    link: iface.link,
                    start: self.start + 28,
                    len: caplen as usize,
                    wire_len: wire_len.max(caplen),
                })
            }
            PCAPNG_SPB => {
                let Some(iface) = self.iface(0, n_ifaces) else {
                    return Err(self.corrupt(
                        "simple packet block in a section without interfaces".to_owned(),
                    ));
                };
                if len < 16 {
                    return Err(self.corrupt(format!("simple packet block of {len} bytes")));
                }
                let wire_len = self.u32_at(8, big_endian);
                let caplen = wire_len.min((len - 16) as u32).min(iface.snaplen.max(1));
                if !iface.link.is_supported() {
                    return Err(self.unsupported(iface.link));
                }
                // Simple packet blocks carry no time; repeating the previous frame's time keeps
                // packet time monotonic for the flow timers.
                Step::Frame(FrameAt {
                    ts_ns: self.last_ts_ns,
                    link: iface.link,
                    start: self.start + 12,
                    len: caplen as usize,
                    wire_len: wire_len.max(caplen),
                })
            }
            _ => Step::Skipped,
        };
        self.consume(len);
        Ok(step)
    }

    fn iface(&self, id: usize, n: usize) -> Option<Interface> {
        match &self.layout {
            Layout::Ng { interfaces, .. } if id < n => interfaces.get(id).copied(),
            _ => None,
        }
    }
}

/// The interface's `if_tsoffset` in the section's byte order. pcap-parser 0.17 always reads
/// this option as little-endian, which is wrong for big-endian sections.
fn tsoffset(idb: &pcap_parser::pcapng::InterfaceDescriptionBlock<'_>, big_endian: bool) -> i64 {
    idb.options
        .iter()
        .filter(|o| o.code == pcap_parser::pcapng::OptionCode::IfTsoffset)
        .find_map(|o| <[u8; 8]>::try_from(o.value.get(..8)?).ok())
        .map_or(0, |b| {
            if big_endian {
                i64::from_be_bytes(b)
            } else {
                i64::from_le_bytes(b)
            }
        })
}

/// True when `b` (shorter than 4 bytes) could be the start of a capture file's magic.
fn is_magic_prefix(b: &[u8]) -> bool {
    const MAGICS: [[u8; 4]; 7] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x34, 0xcd, 0xb2, 0xa1],
        [0x0a, 0x0d, 0x0d, 0x0a],
        [0x1f, 0x8b, 0x08, 0x00],
    ];
    MAGICS.iter().any(|m| m.starts_with(b))
}

impl FrameSource for PcapReader {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let at = loop {
            if self.src.is_none() {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                self.open_next()?;
                continue;
            }
            match self.step() {
                Ok(Step::Frame(at)) => break at,
                Ok(Step::Skipped) => {}
                Ok(Step::End) => {
                    self.src = None;
                    if let Some(p) = &self.progress {
                        p.frames.store(self.frames, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    self.src = None;
                    return Err(e);
                }
            }
        };
        self.last_ts_ns = at.ts_ns;
        self.frames += 1;
        if self.frames % 1024 == 0 {
            if let Some(p) = &self.progress {
                p.frames.store(self.frames, Ordering::Relaxed);
            }
        }
        Ok(Some(Frame {
            ts_ns: at.ts_ns,
            link: at.link,
            data: &self.buf[at.start..at.start + at.len],
            wire_len: at.wire_len,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{gzip, PcapBuilder, PcapngBuilder, TcpSpec, Trace, TsResolution};

    const T0: u64 = 1_700_000_000_123_456_789;

    type Got = (u64, LinkType, Vec<u8>, u32);

    fn read_all(r: &mut PcapReader) -> (Vec<Got>, Option<CaptureError>) {
        let mut got = Vec::new();
        loop {
            match r.next_frame() {
                Ok(Some(f)) => got.push((f.ts_ns, f.link, f.data.to_vec(), f.wire_len)),
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    fn read_bytes(bytes: Vec<u8>) -> (Vec<Got>, Option<CaptureError>) {
        match PcapReader::from_reader("mem.pcap", std::io::Cursor::new(bytes)) {
            Ok(mut r) => read_all(&mut r),
            Err(e) => (Vec::new(), Some(e)),
        }
    }

    fn trace() -> Trace {
        let mut t = Trace::new();
        let spec = TcpSpec {
            client_segments: 2,
            server_segments: 2,
            ..TcpSpec::default()
        };
        t.tcp_session(&spec, T0);
        t
    }

    #[test]
    fn pcap_micro_and_nano_both_byte_orders() {
        let t = trace();
        for (res, be) in [
            (TsResolution::Micro, false),
            (TsResolution::Nano, false),
            (TsResolution::Micro, true),
            (TsResolution::Nano, true),
        ] {
            let mut w = PcapBuilder::new(t.link(), res, be);
            for f in t.frames() {
                w.packet(f.ts_ns, &f.data, f.data.len() as u32 + 4);
            }
            let (got, err) = read_bytes(w.into_bytes());
            assert!(err.is_none(), "{res:?} be={be}: {err:?}");
            assert_eq!(got.len(), t.frames().len());
            for (g, f) in got.iter().zip(t.frames()) {
                let want_ts = match res {
                    TsResolution::Micro => f.ts_ns / 1_000 * 1_000,
                    TsResolution::Nano => f.ts_ns,
                };
                assert_eq!(g.0, want_ts, "{res:?} be={be}");
                assert_eq!(g.1, LinkType::ETHERNET);
                assert_eq!(g.2, f.data);
                assert_eq!(g.3, f.data.len() as u32 + 4);
            }
        }
    }

    fn two_interface_pcapng(big_endian: bool) -> (Vec<u8>, Vec<Got>) {
        let mut w = PcapngBuilder::new(big_endian);
        let eth = w.interface(LinkType::ETHERNET, 6, 0);
        let raw = w.interface(LinkType::RAW, 9, 0);
        let bin = w.interface(LinkType::ETHERNET, 0x80 | 20, 100);
        let mut want = Vec::new();
        let e = vec![0xee; 60];
        let r = vec![0x45; 40];
        w.enhanced_packet(eth, T0, &e, 60);
        want.push((T0 / 1_000 * 1_000, LinkType::ETHERNET, e.clone(), 60));
        w.block(0x0000_0bad, b"unknown block body");
        w.enhanced_packet(raw, T0 + 1, &r, 1500);
        want.push((T0 + 1, LinkType::RAW, r.clone(), 1500));
        w.obsolete_packet(raw, T0 + 2, &r[..21], 40);
        want.push((T0 + 2, LinkType::RAW, r[..21].to_vec(), 40));
        w.simple_packet(&e[..59], 59);
        want.push((T0 + 2, LinkType::ETHERNET, e[..59].to_vec(), 59));
        // 2^-20 s units: nanoseconds survive only to about a microsecond.
        w.enhanced_packet(bin, 1_700_000_000_500_000_000, &e, 60);
        want.push((1_700_000_000_500_000_000, LinkType::ETHERNET, e.clone(), 60));
        // A second section forgets the interfaces of the first.
        w.section();
        let only = w.interface(LinkType::RAW, 9, 0);
        w.enhanced_packet(only, T0 + 5, &r, 40);
        want.push((T0 + 5, LinkType::RAW, r.clone(), 40));
        (w.into_bytes(), want)
    }

    #[test]
    fn pcapng_interfaces_keep_their_link_and_resolution() {
        for be in [false, true] {
            let (bytes, want) = two_interface_pcapng(be);
            let (got, err) = read_bytes(bytes);
            assert!(err.is_none(), "be={be}: {err:?}");
            assert_eq!(got, want, "be={be}");
        }
    }

    #[test]
    fn gzip_is_recognised_by_magic() {
        let t = trace();
        let (got, err) = read_bytes(gzip(&t.pcapng_bytes()));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), t.frames().len());
        assert_eq!(got[3].2, t.frames()[3].data);
        // A truncated gzip stream is a truncated capture.
        let mut z = gzip(&t.pcap_bytes(TsResolution::Nano));
        z.truncate(z.len() / 2);
        let (_, err) = read_bytes(z);
        assert!(
            matches!(err, Some(CaptureError::Truncated { .. })),
            "{err:?}"
        );
    }

    /// Cuts a capture at every length and checks that every whole record before the cut is
    /// returned, then a clean end (cut on a boundary) or `Truncated` at the damaged record.
    fn check_every_cut(bytes: &[u8], boundaries: &[usize], frames_before: &dyn Fn(usize) -> usize) {
        let header_end = boundaries[0];
        for cut in 0..=bytes.len() {
            let (got, err) = read_bytes(bytes[..cut].to_vec());
            let record = boundaries.iter().rev().find(|&&b| b <= cut).copied();
            match (record, err) {
                (Some(b), None) if b == cut => {
                    assert_eq!(got.len(), frames_before(cut), "cut {cut}");
                }
                (Some(b), Some(CaptureError::Truncated { offset, .. })) if b < cut => {
                    assert_eq!(offset, b as u64, "cut {cut}");
                    assert_eq!(got.len(), frames_before(b), "cut {cut}");
                }
                (None, Some(CaptureError::Truncated { offset, .. })) => {
                    assert!(cut < header_end);
                    assert_eq!(offset, 0, "cut {cut}");
                }
                (record, err) => panic!("cut {cut}: record start {record:?}, error {err:?}"),
            }
        }
    }

    #[test]
    fn truncated_pcap_at_every_offset() {
        let mut t = Trace::new();
        t.dns_exchange(&crate::synth::DnsSpec::query("a.example.test", 1), T0);
        let bytes = t.pcap_bytes(TsResolution::Micro);
        let mut boundaries = vec![24];
        for f in t.frames() {
            boundaries.push(boundaries.last().unwrap() + 16 + f.data.len());
        }
        assert_eq!(*boundaries.last().unwrap(), bytes.len());
        let b2 = boundaries.clone();
        check_every_cut(&bytes, &boundaries, &|cut| {
            b2.iter().filter(|&&b| b <= cut).count() - 1
        });
    }

    #[test]
    fn truncated_pcapng_at_every_offset() {
        let mut w = PcapngBuilder::new(false);
        let mut boundaries = vec![w.len()];
        let mut frame_ends = Vec::new();
        let i = w.interface(LinkType::ETHERNET, 9, 0);
        boundaries.push(w.len());
        for k in 0..3u8 {
            w.enhanced_packet(i, T0, &[k; 33], 33);
            boundaries.push(w.len());
            frame_ends.push(w.len());
        }
        let bytes = w.into_bytes();
        check_every_cut(&bytes, &boundaries, &|cut| {
            frame_ends.iter().filter(|&&e| e <= cut).count()
        });
    }

    #[test]
    fn absurd_caplen_is_corrupt_with_offset() {
        let mut w = PcapBuilder::new(LinkType::ETHERNET, TsResolution::Micro, false);
        w.packet(T0, &[0; 60], 60);
        let bad_at = w.len();
        w.record_raw(T0, 5_000_000, 60);
        let mut bytes = w.into_bytes();
        bytes.extend_from_slice(&[0; 100]);
        let (got, err) = read_bytes(bytes);
        assert_eq!(got.len(), 1);
        match err {
            Some(CaptureError::Corrupt { offset, .. }) => assert_eq!(offset, bad_at as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn pcapng_length_mismatch_and_unknown_interface_are_corrupt() {
        let mut w = PcapngBuilder::new(false);
        w.interface(LinkType::ETHERNET, 6, 0);
        let at = w.len();
        w.enhanced_packet(0, T0, &[1; 20], 20);
        let mut bytes = w.clone().into_bytes();
        let n = bytes.len();
        bytes[n - 4] ^= 0x40;
        let (_, err) = read_bytes(bytes);
        assert!(
            matches!(err, Some(CaptureError::Corrupt { offset, .. }) if offset == at as u64),
            "{err:?}"
        );
        w.enhanced_packet(0, T0, &[1; 20], 20);
        let mut bytes = w.into_bytes();
        let second = n;
        bytes[second + 8] = 7; // interface id 7
        let (got, err) = read_bytes(bytes);
        assert_eq!(got.len(), 1);
        assert!(
            matches!(err, Some(CaptureError::Corrupt { offset, .. }) if offset == second as u64),
            "{err:?}"
        );
    }

    #[test]
    fn unsupported_link_is_reported_at_first_frame() {
        let mut w = PcapBuilder::new(LinkType(147), TsResolution::Micro, false);
        let empty = w.clone().into_bytes();
        let (got, err) = read_bytes(empty);
        assert!(got.is_empty() && err.is_none(), "no frame, no complaint");
        w.packet(T0, &[0; 10], 10);
        let (_, err) = read_bytes(w.into_bytes());
        assert!(
            matches!(
                err,
                Some(CaptureError::UnsupportedLink { linktype: 147, .. })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn not_a_capture_and_missing_files() {
        let (_, err) = read_bytes(b"GET / HTTP/1.1\r\n\r\n".to_vec());
        assert!(matches!(err, Some(CaptureError::NotPcap { .. })), "{err:?}");
        let missing = PathBuf::from("/nonexistent/nameflow-test.pcap");
        let err = PcapReader::open(&[missing]).err();
        assert!(matches!(err, Some(CaptureError::Open { .. })), "{err:?}");
    }

    #[test]
    fn progress_counts_stored_bytes_and_frames_over_several_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = trace();
        let a = dir.path().join("a.pcap");
        let b = dir.path().join("b.pcap.gz");
        t.write_pcap(&a, TsResolution::Nano).unwrap();
        std::fs::write(&b, gzip(&t.pcap_bytes(TsResolution::Micro))).unwrap();
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        let total = size(&a) + size(&b);
        let progress = Arc::new(ReadProgress::default());
        let mut r = PcapReader::open_with_progress(&[a, b], Some(progress.clone())).unwrap();
        let (got, err) = read_all(&mut r);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            progress.bytes.load(Ordering::Relaxed),
            total,
            "compressed bytes"
        );
        assert_eq!(progress.frames.load(Ordering::Relaxed), got.len() as u64);
    }

    #[test]
    fn several_files_read_in_order_as_one_stream() {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = trace();
        let a = dir.path().join("a.pcap");
        let b = dir.path().join("b.whatever");
        let c = dir.path().join("c.pcapng");
        t.write_pcap(&a, TsResolution::Nano).unwrap();
        std::fs::write(&b, gzip(&t.pcap_bytes(TsResolution::Micro))).unwrap();
        t.write_pcapng(&c).unwrap();
        let mut r = PcapReader::open(&[a, b, c]).expect("open");
        let (got, err) = read_all(&mut r);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 3 * t.frames().len());
        let n = t.frames().len();
        assert_eq!(got[n].2, t.frames()[0].data);
        assert_eq!(got[2 * n + 1].0, t.frames()[1].ts_ns);
    }

    #[test]
    fn error_moves_on_to_the_next_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = trace();
        let bad = dir.path().join("bad.pcap");
        let good = dir.path().join("good.pcap");
        let mut bytes = t.pcap_bytes(TsResolution::Micro);
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&bad, bytes).unwrap();
        t.write_pcap(&good, TsResolution::Micro).unwrap();
        let mut r = PcapReader::open(&[bad, good]).expect("open");
        let (first, err) = read_all(&mut r);
        assert_eq!(first.len(), t.frames().len() - 1);
        assert!(
            matches!(err, Some(CaptureError::Truncated { .. })),
            "{err:?}"
        );
        let (second, err) = read_all(&mut r);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(second.len(), t.frames().len());
    }

    #[test]
    fn every_shared_capture_reads_to_the_end() {
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"));
        if !root.is_dir() {
            println!("skipping: {} is absent", root.display());
            return;
        }
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d)
                .expect("readable shared dir")
                .flatten()
            {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                    if name.contains(".pcap") || name.ends_with(".cap") {
                        files.push(p);
                    }
                }
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no captures found under shared/");
        for f in files {
            let mut r = PcapReader::open(std::slice::from_ref(&f))
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let mut n = 0u64;
            let mut last = 0;
            loop {
                match r.next_frame() {
                    Ok(Some(fr)) => {
                        n += 1;
                        assert!(fr.data.len() as u32 <= fr.wire_len);
                        last = fr.ts_ns;
                    }
                    Ok(None) => break,
                    Err(e) => panic!("{}: after {n} frames: {e}", f.display()),
                }
            }
            assert!(n > 0, "{}: no frames", f.display());
            println!("{}: {n} frames, last at {last}", f.display());
        }
    }
}

//! Packet sources. Everything behind [`FrameSource`] is a way of getting frames; the engine
//! does not know which one it is reading.
//!
//! INTERFACE CONTRACT (the engine depends on exactly this):
//! - `FrameSource::next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError>`;
//!   `Ok(None)` is the end of input.
//! - `pcap::PcapReader::open(&[PathBuf]) -> Result<PcapReader, CaptureError>`: several files
//!   read in order as one stream, `-` for stdin, `.gz` (by magic bytes) read transparently,
//!   pcap (µs and ns) and pcapng (every interface with its own link type and time resolution).

pub mod pcap;
pub mod privilege;
pub mod xdp;
pub mod xsk;

use crate::decode::LinkType;
use std::path::PathBuf;

/// One captured frame, borrowed from the source's buffer until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The link type of the interface the frame came from.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The length of the frame on the wire (at least `data.len()`).
    pub wire_len: u32,
}

/// A source of frames.
pub trait FrameSource {
    /// The next frame, `Ok(None)` at the end of input.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError>;
}

/// Errors a person can act on: each names the file and, for damage, the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a pcap or pcapng file (unrecognised magic bytes); give a capture file written by tcpdump, Wireshark or Zeek")]
    NotPcap { path: PathBuf },
    #[error(
        "{path} is corrupt at byte offset {offset}: {what}; everything before it was processed"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{path} ends in the middle of a packet at byte offset {offset} (truncated file); everything before it was processed")]
    Truncated { path: PathBuf, offset: u64 },
    #[error("{path}: unsupported link type {linktype}; supported: Ethernet (1), Linux SLL (113), SLL2 (276), raw IP (101, 228, 229), BSD loopback/null (0, 108), FDDI (10), PPP (9, 50), 802.11 (105) and radiotap (127)")]
    UnsupportedLink { path: PathBuf, linktype: u32 },
    #[error("reading {path} failed at byte offset {offset}: {source}")]
    Io {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
}

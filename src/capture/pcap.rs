//! Placeholder until the pcap reader lands; replaced wholesale.
use super::{CaptureError, Frame, FrameSource};
use std::path::PathBuf;

/// Reads pcap/pcapng files in order as one stream.
pub struct PcapReader {
    _paths: Vec<PathBuf>,
}

impl PcapReader {
    pub fn open(paths: &[PathBuf]) -> Result<PcapReader, CaptureError> {
        Ok(PcapReader {
            _paths: paths.to_vec(),
        })
    }
}

impl FrameSource for PcapReader {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        Ok(None)
    }
}

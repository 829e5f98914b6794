//! Placeholder until the decoder lands; replaced wholesale by the decode work.
use super::*;

/// Decodes frames into packets; one per core.
pub struct Decoder {
    cfg: DecodeConfig,
    counters: DecodeCounters,
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Decoder {
        Decoder {
            cfg,
            counters: DecodeCounters::default(),
        }
    }

    /// Decodes one frame and hands each packet in it to `visit`, outermost first.
    pub fn decode<F: FnMut(&Packet<'_>)>(
        &mut self,
        link: LinkType,
        ts_ns: u64,
        frame: &[u8],
        visit: F,
    ) -> Result<(), DecodeError> {
        let _ = (link, ts_ns, frame, visit, self.cfg);
        self.counters.frames += 1;
        Err(DecodeError::UnsupportedLink)
    }

    pub fn counters(&self) -> &DecodeCounters {
        &self.counters
    }
}

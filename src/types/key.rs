//! The parts of a connection key that records carry.

/// The 802.1Q ids that are part of a connection's key under `--conn-key vlan`. Zeek keeps an
/// id of 0 as "no tag" (its packet fields are 0 when absent), so a priority tag (id 0) counts
/// as no tag here too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Vlans {
    /// Outer VLAN id (Zeek's `id.ctx.vlan`).
    pub outer: Option<u16>,
    /// Inner VLAN id of a QinQ frame (Zeek's `id.ctx.inner_vlan`).
    pub inner: Option<u16>,
}

impl Vlans {
    /// No tag: what every key holds with the default (VLAN-unaware) key.
    pub const NONE: Vlans = Vlans {
        outer: None,
        inner: None,
    };

    /// The ids of a frame, with id 0 taken as absent (as Zeek does).
    pub fn new(outer: Option<u16>, inner: Option<u16>) -> Vlans {
        Vlans {
            outer: outer.filter(|&v| v != 0),
            inner: inner.filter(|&v| v != 0),
        }
    }

    /// True when neither id is present.
    pub fn is_none(&self) -> bool {
        self.outer.is_none() && self.inner.is_none()
    }
}

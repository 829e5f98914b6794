//! Service detection from payload (placeholder until it lands; replaced wholesale).
//!
//! INTERFACE CONTRACT (the flow table depends on exactly this):
//! - `ServiceState::default()`: one per connection, `Copy`, small (no heap).
//! - `ServiceState::observe(&mut self, pkt: &PacketSummary, from_orig: bool, orig_port: u16,
//!   resp_port: u16)`: called for every packet of the connection, after the flow table decided
//!   the direction; it looks at `pkt.payload()` (the first bytes of the transport payload),
//!   `pkt.carries`, and the ports.
//! - `ServiceState::services(&self) -> ServiceList`: the confirmed services, in order.

use super::summary::PacketSummary;
use crate::output::record::ServiceList;

/// Per-connection service detection state.
#[derive(Clone, Copy, Default, Debug)]
pub struct ServiceState {
    confirmed: ServiceList,
}

impl ServiceState {
    /// Looks at one packet of the connection.
    pub fn observe(&mut self, pkt: &PacketSummary, from_orig: bool, orig_port: u16, resp_port: u16) {
        let _ = (pkt, from_orig, orig_port, resp_port);
    }

    /// The confirmed services.
    pub fn services(&self) -> ServiceList {
        self.confirmed
    }
}

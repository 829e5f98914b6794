//! Service detection from payload, in the manner of Zeek's `service` column.
//!
//! INTERFACE CONTRACT (the flow table depends on exactly this):
//! - `ServiceState::default()`: one per connection, `Copy`, small (no heap).
//! - `ServiceState::observe(&mut self, pkt: &PacketSummary, from_orig: bool, orig_port: u16,
//!   resp_port: u16)`: called for every packet of the connection, after the flow table decided
//!   the direction; it looks at `pkt.payload()` (the first bytes of the transport payload),
//!   `pkt.carries`, and the ports.
//! - `ServiceState::services(&self) -> ServiceList`: the confirmed services, in order.
//!
//! Zeek attaches an analyzer to a connection either because of the responder port or because a
//! dynamic protocol detection signature (`scripts/base/protocols/*/dpd.sig`) matched, and it
//! writes a service only once that analyzer *confirms* the protocol by parsing it. We cannot
//! run Zeek's parsers, so each protocol here gets a cheap structural check of the first payload
//! bytes of each direction that stands in for "the parser accepted it", combined the way Zeek
//! combines them:
//!
//! - Signatures that need both sides (`requires-reverse-signature`) need both sides here: HTTP on
//!   a non-HTTP port, FTP, SMTP, POP3, IRC. SSH needs both banners and key-exchange traffic from
//!   both sides, because Zeek's SSH analyzer confirms only on `NEWKEYS` (a client-only capture
//!   gives no `ssh`: `ssh-half-duplex-client` in the conformance set).
//! - Port-only analyzers (DNS, DHCP, NTP, Modbus, IMAP, Kerberos, RDPEUDP) are tried only on
//!   their ports.
//!   Zeek has no DNS signature, so DNS on another port stays `-` there and here (53, 137, 5353,
//!   5355 for UDP; 53 for TCP with its two-byte length prefix).
//! - TLS is confirmed by a ServerHello, on any port; after an upgrade the inspection window
//!   reopens so the TLS handshake is seen and every confirmed analyzer comes out in confirmation
//!   order (`imap,ssl`, `ftp,ssl`, `irc,ssl`, `mysql,ssl`, `http,ssl`). The upgrades are Zeek's:
//!   IMAP/SMTP/POP3 STARTTLS when sent, FTP `AUTH TLS` answered by 234 (`FTP.cc`), IRC
//!   `STARTTLS` answered by 670 (`IRC.cc`), a MySQL handshake response with `CLIENT_SSL`
//!   (`mysql-analyzer.pac`), and a 200 reply to HTTP `CONNECT` (`HTTP.cc`).
//! - Analyzers Zeek attaches by port confirm as its parsers do there: FTP on the first client
//!   command, IRC on the first client line, MySQL on the client's handshake response.
//! - The first nine bytes of the client's stream are kept across segments, so an HTTP request
//!   sent in pieces (`tcp-ethernet-padding-http`: a byte per segment) still matches the method
//!   as Zeek's signature does on the reassembled stream.
//! - HTTP is never confirmed on a connection that started without a SYN: Zeek's HTTP analyzer
//!   ignores "partial" connections (`wikipedia-dns-http` has such a GET that stays `-`).
//! - The outer UDP connection of a tunnel gets the tunnel's service from `pkt.carries` (Teredo
//!   only once both sides sent a valid Teredo packet: `Tunnel::delay_teredo_confirmation`); VXLAN and
//!   Geneve are also recognised from their own header, since the decoder marks a frame only when
//!   the inner frame is IP and Zeek confirms VXLAN carrying ARP too (`vxlan-icmp`).
//!
//! Known gaps: `ftp-data` needs the FTP control connection's PASV/PORT expectation, which lives
//! in another flow (possibly on another worker), so it is never detected here. The DHCP magic
//! cookie sits at offset 236, beyond the 160 payload bytes a summary carries, so DHCP is checked
//! by its fixed header and full length instead. Only the first [`WINDOW`] payload packets of
//! each direction are inspected, as Zeek's signature engine only sees the start of a stream.

use super::summary::PacketSummary;
use crate::decode::dns::{DnsError, Message, NameLen};
use crate::decode::{TunnelKind, L4};
use crate::types::record::{Service, ServiceList};

/// How many payload-carrying packets of each direction are inspected.
const WINDOW: u8 = 6;

/// Zeek's HTTP analyzer ports (`HTTP::ports`).
const HTTP_PORTS: [u16; 8] = [80, 81, 631, 1080, 3128, 8000, 8080, 8888];
/// Zeek's DNS analyzer ports (`DNS::ports`, UDP side; TCP is 53 only).
const DNS_UDP_PORTS: [u16; 4] = [53, 137, 5353, 5355];
/// Zeek's IMAP analyzer ports.
const IMAP_PORTS: [u16; 1] = [143];
/// Zeek's FTP analyzer ports.
const FTP_PORTS: [u16; 2] = [21, 2811];
/// Zeek's IRC analyzer ports (`IRC::ports`).
const IRC_PORTS: [u16; 4] = [6666, 6667, 6668, 6669];
/// Zeek's MySQL analyzer port (`MySQL::ports`).
const MYSQL_PORTS: [u16; 1] = [3306];

// Per-direction evidence bits. A bit records that a signature-like check matched on this side;
// confirmation rules combine the bits of both sides.
const HTTP_REQ: u32 = 1 << 0;
const HTTP_RESP: u32 = 1 << 1;
const SSH_BANNER: u32 = 1 << 2;
const SSH_KEX: u32 = 1 << 3;
const FTP_USER: u32 = 1 << 4;
const FTP_GREETING: u32 = 1 << 5;
const FTP_LOGIN: u32 = 1 << 6;
const SMTP_HELO: u32 = 1 << 7;
const SMTP_GREETING: u32 = 1 << 8;
const POP3_CMD: u32 = 1 << 9;
const POP3_OK: u32 = 1 << 10;
const IMAP_CMD: u32 = 1 << 11;
const IMAP_OK: u32 = 1 << 12;
const IRC_NICK: u32 = 1 << 13;
const IRC_USER: u32 = 1 << 14;
const IRC_REPLY: u32 = 1 << 15;
const SSL2_CLIENT_HELLO: u32 = 1 << 16;
/// The client asked for a tunnel (`CONNECT`).
const HTTP_CONNECT: u32 = 1 << 17;
/// The client sent `AUTH TLS` (RFC 4217).
const FTP_AUTH_TLS: u32 = 1 << 18;
/// The client sent IRC's `STARTTLS`.
const IRC_STARTTLS: u32 = 1 << 19;
/// The server opened with a MySQL initial handshake (protocol 9 or 10).
const MYSQL_GREETING: u32 = 1 << 20;
/// Protocol 10 of that greeting.
const MYSQL_V10: u32 = 1 << 21;
/// The client sent an MS-RDPEUDP SYN.
const RDPEUDP_SYN: u32 = 1 << 22;
/// A valid Teredo packet came from this side.
const TEREDO_VALID: u32 = 1 << 23;

// Connection-wide flags.
const STARTED: u8 = 1 << 0;
/// The first TCP packet had no SYN (Zeek's "partial" connection).
const PARTIAL: u8 = 1 << 1;
/// A STARTTLS-like upgrade was requested: TLS may start mid-stream.
const STARTTLS: u8 = 1 << 2;
/// The NTP analyzer flipped the roles on a message delivered as the originator's, and on one
/// delivered as the responder's: each direction flips at most once.
const NTP_FLIPPED_ORIG: u8 = 1 << 3;
const NTP_FLIPPED_RESP: u8 = 1 << 4;
/// Zeek's DNS analyzer is attached (UDP, by the responder's port when the connection began).
const DNS_ATTACHED: u8 = 1 << 5;
/// The DNS analyzer has read its first message.
const DNS_FIRST_DONE: u8 = 1 << 6;

/// What one direction has shown so far.
#[derive(Clone, Copy, Default, Debug)]
struct Side {
    /// Payload-carrying packets inspected (saturates at [`WINDOW`]).
    seen: u8,
    bits: u32,
}

/// Per-connection service detection state (about 20 bytes, `Copy`).
#[derive(Clone, Copy, Default, Debug)]
pub struct ServiceState {
    confirmed: ServiceList,
    orig: Side,
    resp: Side,
    flags: u8,
    /// The first bytes of the client's stream, gathered across segments, so a request method
    /// sent a byte at a time is still seen (Zeek's signatures match the reassembled stream).
    head: [u8; HEAD],
    head_len: u8,
}

/// How many stream bytes [`ServiceState::head`] keeps: the longest HTTP method.
const HEAD: usize = 9;

impl ServiceState {
    /// Looks at one packet of the connection.
    pub fn observe(
        &mut self,
        pkt: &PacketSummary,
        from_orig: bool,
        orig_port: u16,
        resp_port: u16,
    ) {
        if let Some(kind) = pkt.carries {
            if kind == TunnelKind::Teredo {
                // Zeek's `Tunnel::delay_teredo_confirmation` (on by default): Teredo is
                // confirmed only once both sides sent a valid Teredo packet, so a lone
                // bubble or router advertisement leaves the connection without a service.
                let side = if from_orig {
                    &mut self.orig
                } else {
                    &mut self.resp
                };
                side.bits |= TEREDO_VALID;
                if self.orig.bits & self.resp.bits & TEREDO_VALID != 0 {
                    self.confirmed.push(Service::Teredo);
                }
            } else if let Some(s) = tunnel_service(kind) {
                self.confirmed.push(s);
            }
        }
        let tcp_flags = match pkt.l4 {
            L4::Tcp { flags, .. } => Some(flags),
            L4::Udp { .. } => None,
            _ => return,
        };
        if self.flags & STARTED == 0 {
            self.flags |= STARTED;
            if matches!(tcp_flags, Some(f) if f & 0x02 == 0) {
                self.flags |= PARTIAL;
            }
        }
        let data = pkt.payload();
        if data.is_empty() || pkt.carries.is_some() {
            return;
        }
        let mut side = if from_orig { self.orig } else { self.resp };
        if side.seen >= WINDOW {
            return;
        }
        let first = side.seen == 0;
        side.seen += 1;
        let full_len = pkt.payload_len as usize;
        let ports = Ports {
            orig: orig_port,
            resp: resp_port,
        };
        if tcp_flags.is_some() {
            self.tcp(&mut side, data, full_len, from_orig, first, ports);
        } else {
            self.udp(data, full_len, ports);
            if ports.resp == 3389 {
                self.rdpeudp(&mut side, data, from_orig);
            }
        }
        if from_orig {
            self.orig = side;
        } else {
            self.resp = side;
        }
        if tcp_flags.is_some() {
            self.confirm_tcp(ports);
        }
    }

    /// Zeek's NTP analyzer (`ntp-analyzer.pac`, `proc_ntp_message`): the mode of a message
    /// says who sent it, so a server-mode (4) message from the originator, or a client-mode (3)
    /// message from the responder, asks the connection to flip its roles (Zeek's
    /// `Conn::FlipRoles`, the `misordered-ntp` test: a reply captured before its request).
    /// Each binpac flow keeps its own `flipped_`, so each direction of delivery flips at most
    /// once. Returns true when the connection must flip now; unlike service detection this
    /// looks at every packet, as the analyzer parses every datagram.
    pub fn ntp_wants_flip(
        &mut self,
        pkt: &PacketSummary,
        from_orig: bool,
        orig_port: u16,
        resp_port: u16,
    ) -> bool {
        let ports = Ports {
            orig: orig_port,
            resp: resp_port,
        };
        let data = pkt.payload();
        if !ports.either(&[123]) || !ntp_message(data, pkt.payload_len as usize) {
            return false;
        }
        let mode = data[0] & 7;
        let (mismatch, done) = if from_orig {
            (mode == 4, NTP_FLIPPED_ORIG)
        } else {
            (mode == 3, NTP_FLIPPED_RESP)
        };
        if !mismatch || self.flags & done != 0 {
            return false;
        }
        self.flags |= done;
        true
    }

    /// Notes that Zeek's DNS analyzer runs on this UDP connection (see [`Self::dns_wants_flip`]).
    pub fn attach_dns(&mut self) {
        self.flags |= DNS_ATTACHED;
    }

    /// Zeek's `DNS_Interpreter::ParseMessage`: when the first message the DNS analyzer reads
    /// (one of at least a header's 12 bytes) is a response sent by the originator, the
    /// connection is flipped (the caller leaves a connection to a multicast address as it is).
    /// A query and its response seen in reverse order between two DNS ports (NetBIOS 137 to
    /// 137, server to server on 53) come out with the querier as the originator.
    pub fn dns_wants_flip(&mut self, pkt: &PacketSummary, from_orig: bool) -> bool {
        let data = pkt.payload();
        if self.flags & (DNS_ATTACHED | DNS_FIRST_DONE) != DNS_ATTACHED
            || data.len() < 12
            || pkt.payload_len < 12
        {
            return false;
        }
        self.flags |= DNS_FIRST_DONE;
        from_orig && Message::new_unchecked(data).is_response()
    }

    /// Confirms a service decided outside this connection's payload (an expected connection
    /// announced by a control connection, such as FTP's data channel).
    pub fn confirm(&mut self, s: crate::types::record::Service) {
        self.confirmed.push(s);
    }

    /// The confirmed services.
    pub fn services(&self) -> ServiceList {
        self.confirmed
    }

    fn udp(&mut self, data: &[u8], full_len: usize, ports: Ports) {
        if ports.either(&DNS_UDP_PORTS) && dns_message(data, full_len, ports.either(&[137])) {
            self.confirmed.push(Service::Dns);
        } else if ports.either(&[67, 68]) && dhcp_message(data, full_len) {
            self.confirmed.push(Service::Dhcp);
        } else if ports.either(&[123]) && ntp_message(data, full_len) {
            self.confirmed.push(Service::Ntp);
        } else if (ports.either(&[88]) || krb_tgs_req_signature(data)) && krb_message(data) {
            self.confirmed.push(Service::Krb);
        } else if ports.either(&[4789]) && vxlan_header(data, full_len) {
            // The decoder sets `carries` only when the inner frame is IP; Zeek's VXLAN analyzer
            // confirms on the header whatever the inner frame is (ARP in `vxlan-icmp`).
            self.confirmed.push(Service::Vxlan);
        } else if ports.either(&[6081]) && geneve_header(data, full_len) {
            self.confirmed.push(Service::Geneve);
        }
    }

    /// MS-RDPEUDP on its port, as Zeek's `rdpeudp-analyzer.pac` follows the handshake: a client
    /// SYN (the SYN flag, `snSourceAck` 0xffffffff), then a server SYN+ACK (the SYN or ACK flag)
    /// confirms. Each datagram opens with the FEC header: `snSourceAck`, the receive window,
    /// `uFlags`.
    fn rdpeudp(&mut self, side: &mut Side, data: &[u8], from_orig: bool) {
        let Some(h) = data.get(..8) else {
            return;
        };
        let flags = u16::from_be_bytes([h[6], h[7]]);
        if from_orig {
            if self.orig.bits & RDPEUDP_SYN == 0 && flags & 0x01 != 0 && h[..4] == [0xff; 4] {
                side.bits |= RDPEUDP_SYN;
            }
        } else if self.orig.bits & RDPEUDP_SYN != 0 && flags & 0x05 != 0 {
            self.confirmed.push(Service::Rdpeudp);
        }
    }

    fn tcp(
        &mut self,
        side: &mut Side,
        data: &[u8],
        full_len: usize,
        from_orig: bool,
        first: bool,
        ports: Ports,
    ) {
        // Binary protocols whose every message starts with a recognisable header.
        if dce_rpc_header(data) {
            self.confirmed.push(Service::DceRpc);
        }
        if smb_header(data) {
            self.confirmed.push(Service::Smb);
        }
        if ports.resp == 502 && from_orig && modbus_request(data, full_len) {
            self.confirmed.push(Service::Modbus);
        }
        if ports.resp == 88 && data.len() > 4 && krb_message(&data[4..]) {
            self.confirmed.push(Service::KrbTcp);
        }
        if ports.resp == 53 && data.len() > 2 {
            let declared = usize::from(u16::from_be_bytes([data[0], data[1]]));
            if declared + 2 <= full_len.max(data.len()) && dns_message(&data[2..], declared, false)
            {
                self.confirmed.push(Service::Dns);
            }
        }

        // TLS: the record layer can only start a stream, or follow a STARTTLS upgrade.
        if first || self.flags & STARTTLS != 0 {
            if from_orig {
                if ssl2_client_hello(data) {
                    side.bits |= SSL2_CLIENT_HELLO;
                }
            } else if tls_server_hello(data)
                || (self.orig.bits & SSL2_CLIENT_HELLO != 0 && ssl2_server_hello(data))
            {
                self.confirmed.push(Service::Ssl);
            }
        }

        // SSH: a banner opens each side; anything after it is the key exchange.
        if first {
            if ssh_banner(data) {
                side.bits |= SSH_BANNER;
                if banner_followed_by_data(data) {
                    side.bits |= SSH_KEX;
                }
            }
        } else if side.bits & SSH_BANNER != 0 {
            side.bits |= SSH_KEX;
        }

        if ports.resp_in(&MYSQL_PORTS) {
            self.mysql(side, data, from_orig, first);
        }
        if from_orig {
            self.tcp_client_lines(side, data, first, ports);
        } else {
            self.tcp_server_lines(side, data, first, ports);
        }
    }

    /// Text commands of the client side. Every line of the packet is looked at, as the
    /// signatures allow the command anywhere in the stream's first bytes.
    fn tcp_client_lines(&mut self, side: &mut Side, data: &[u8], first: bool, ports: Ports) {
        if first && http_request_line(data) {
            side.bits |= HTTP_REQ;
            if first_word(trim_start(data)) == b"CONNECT" {
                side.bits |= HTTP_CONNECT;
            }
        }
        if usize::from(self.head_len) < HEAD {
            let at = usize::from(self.head_len);
            let n = data.len().min(HEAD - at);
            self.head[at..at + n].copy_from_slice(&data[..n]);
            self.head_len += n as u8;
            // A request that the first segment did not hold whole: Zeek's `dpd_http_client`
            // wants the method and then whitespace (or the end of what we keep).
            let head = &self.head[..usize::from(self.head_len)];
            if !first && side.bits & HTTP_REQ == 0 && http_method_prefix(head) {
                side.bits |= HTTP_REQ;
            }
        }
        for line in lines(data) {
            let line = trim_start(line);
            let word = first_word(line);
            // Zeek's FTP analyzer, attached by port, confirms on the first client line whose
            // first word is a command (three or more printable characters); its IRC analyzer
            // on the first client line of three or more characters after the prefix.
            if ports.resp_in(&FTP_PORTS) && ftp_command(word) {
                self.confirmed.push(Service::Ftp);
            }
            if ports.resp_in(&IRC_PORTS) && irc_client_line(line) {
                self.confirmed.push(Service::Irc);
            }
            if eq_ci(word, b"AUTH") && eq_ci(first_word(trim_start(&line[word.len()..])), b"TLS") {
                side.bits |= FTP_AUTH_TLS;
                // Zeek's analyzer reads every reply; the go-ahead may come after the server's
                // inspection window has run out (a long FEAT listing), so reopen it.
                self.resp.seen = 0;
            }
            if eq_ci(word, b"USER") {
                side.bits |= FTP_USER | POP3_CMD | IRC_USER;
            }
            if eq_ci(word, b"NICK") {
                side.bits |= IRC_NICK;
            }
            if eq_ci(word, b"HELO") || eq_ci(word, b"EHLO") {
                side.bits |= SMTP_HELO;
            }
            if eq_ci(word, b"APOP") || eq_ci(word, b"CAPA") || eq_ci(word, b"AUTH") {
                side.bits |= POP3_CMD;
            }
            if eq_ci(word, b"STLS") || eq_ci(word, b"STARTTLS") {
                side.bits |= IRC_STARTTLS;
                self.resp.seen = 0;
                // POP3's STLS and SMTP's STARTTLS switch as soon as they are sent (the
                // servers' go-ahead is not awaited); IRC waits for its 670 reply below.
                if !ports.resp_in(&IRC_PORTS) {
                    self.start_tls();
                }
            }
            // IMAP: "<tag> <command>", the tag being any atom.
            if !word.is_empty() && word.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'.') {
                let rest = trim_start(&line[word.len()..]);
                let cmd = first_word(rest);
                if !cmd.is_empty()
                    && cmd.iter().all(u8::is_ascii_alphabetic)
                    && line.len() > word.len()
                {
                    side.bits |= IMAP_CMD;
                    if eq_ci(cmd, b"STARTTLS") {
                        self.start_tls();
                    }
                }
            }
        }
    }

    /// Replies of the server side.
    fn tcp_server_lines(&mut self, side: &mut Side, data: &[u8], first: bool, ports: Ports) {
        let client = self.orig.bits;
        if first {
            if data.starts_with(b"HTTP/") && data.get(5).is_some_and(u8::is_ascii_digit) {
                side.bits |= HTTP_RESP;
                // Zeek's HTTP analyzer hands the stream after a 200 reply to CONNECT to
                // protocol detection again, which finds the TLS inside (`http,ssl`).
                let code = trim_start_spaces(&data[first_word(data).len()..]);
                if client & HTTP_CONNECT != 0 && reply_code(code, &[b"200"]) {
                    self.start_tls();
                }
            }
            let t = trim_start(data);
            if reply_code(t, &[b"220", b"120"]) {
                side.bits |= FTP_GREETING;
            }
            if reply_code(t, &[b"220"]) {
                side.bits |= SMTP_GREETING;
            }
            if data.starts_with(b"+OK") {
                side.bits |= POP3_OK;
            }
            if data.starts_with(b"* OK") || data.starts_with(b"* PREAUTH") {
                side.bits |= IMAP_OK;
            }
        }
        for line in lines(data) {
            let t = trim_start(line);
            if side.bits & FTP_GREETING != 0 && reply_code(t, &[b"230", b"331"]) {
                side.bits |= FTP_LOGIN;
            }
            if irc_reply(line) {
                side.bits |= IRC_REPLY;
                // RPL_STARTTLS: Zeek's IRC analyzer adds SSL after it.
                if client & IRC_STARTTLS != 0 && irc_reply_code(line) == Some(670) {
                    self.start_tls();
                }
            }
            // Zeek's FTP analyzer adds SSL after a 234 reply to `AUTH TLS`.
            if client & FTP_AUTH_TLS != 0 && ports.resp_in(&FTP_PORTS) && reply_code(t, &[b"234"]) {
                self.start_tls();
            }
        }
    }

    /// MySQL on its port, as Zeek's analyzer reads the handshake: the server's initial
    /// handshake (protocol 9 or 10), then the client's handshake response confirms `mysql`;
    /// a protocol-10 response with `CLIENT_SSL` set switches the connection to TLS.
    fn mysql(&mut self, side: &mut Side, data: &[u8], from_orig: bool, first: bool) {
        // Packet header: 3-byte little-endian length, sequence number.
        let Some(&[_, _, _, seq, body0, ..]) = data.get(..5) else {
            return;
        };
        if !from_orig {
            if first && seq == 0 && (body0 == 9 || body0 == 10) {
                side.bits |= MYSQL_GREETING;
                if body0 == 10 {
                    side.bits |= MYSQL_V10;
                }
            }
            return;
        }
        let server = self.resp.bits;
        if server & MYSQL_GREETING == 0 || seq != 1 {
            return;
        }
        self.confirmed.push(Service::Mysql);
        // CLIENT_SSL is bit 11 of the capability flags that open a protocol-10 response.
        const CLIENT_SSL: u8 = 0x08;
        if server & MYSQL_V10 != 0 && data.get(5).is_some_and(|b| b & CLIENT_SSL != 0) {
            self.start_tls();
        }
    }

    /// An upgrade to TLS was requested: reopen the inspection window of both sides so the
    /// handshake that follows is looked at.
    fn start_tls(&mut self) {
        self.flags |= STARTTLS;
        self.orig.seen = 0;
        self.resp.seen = 0;
    }

    fn confirm_tcp(&mut self, ports: Ports) {
        let (o, r) = (self.orig.bits, self.resp.bits);
        let both = |a: u32, b: u32| o & a != 0 && r & b != 0;
        if self.flags & PARTIAL == 0
            && o & HTTP_REQ != 0
            && (ports.resp_in(&HTTP_PORTS) || r & HTTP_RESP != 0)
        {
            self.confirmed.push(Service::Http);
        }
        let ssh = SSH_BANNER | SSH_KEX;
        if o & ssh == ssh && r & ssh == ssh {
            self.confirmed.push(Service::Ssh);
        }
        if both(FTP_USER, FTP_GREETING) && (ports.resp_in(&FTP_PORTS) || r & FTP_LOGIN != 0) {
            self.confirmed.push(Service::Ftp);
        }
        if both(SMTP_HELO, SMTP_GREETING) {
            self.confirmed.push(Service::Smtp);
        }
        if both(POP3_CMD, POP3_OK) {
            self.confirmed.push(Service::Pop3);
        }
        if both(IMAP_CMD, IMAP_OK) && ports.resp_in(&IMAP_PORTS) {
            self.confirmed.push(Service::Imap);
        }
        if o & IRC_NICK != 0 && o & IRC_USER != 0 && r & IRC_REPLY != 0 {
            self.confirmed.push(Service::Irc);
        }
    }
}

/// The two ports of the connection, in the flow table's orientation.
#[derive(Clone, Copy)]
struct Ports {
    orig: u16,
    resp: u16,
}

impl Ports {
    /// Zeek picks TCP analyzers by the responder port.
    fn resp_in(self, set: &[u16]) -> bool {
        set.contains(&self.resp)
    }

    /// For UDP either port counts: which side is the client is a guess for UDP (a DNS reply
    /// seen first makes the server the originator).
    fn either(self, set: &[u16]) -> bool {
        set.contains(&self.resp) || set.contains(&self.orig)
    }
}

fn tunnel_service(kind: TunnelKind) -> Option<Service> {
    match kind {
        TunnelKind::Vxlan => Some(Service::Vxlan),
        TunnelKind::Geneve => Some(Service::Geneve),
        TunnelKind::Teredo => Some(Service::Teredo),
        TunnelKind::Ayiya => Some(Service::Ayiya),
        TunnelKind::Gtpv1 => Some(Service::Gtpv1),
        // IP-in-IP and GRE are not connections with a service of their own in Zeek.
        TunnelKind::Ip | TunnelKind::Gre | TunnelKind::GreUdp => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Text helpers.

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn first_word(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| !b.is_ascii_whitespace()).count();
    &s[..n]
}

fn eq_ci(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The lines of a payload (split on LF; a trailing CR stays and is whitespace to the checks).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// `code` followed by a non-digit (a space, a dash for multi-line replies, or the line end).
fn reply_code(line: &[u8], codes: &[&[u8; 3]]) -> bool {
    codes.iter().any(|c| line.starts_with(&c[..]))
        && line.get(3).is_none_or(|b| !b.is_ascii_digit())
}

/// `SSH-1.` or `SSH-2.` at the start of the stream (Zeek's `dpd_ssh_*` signatures).
fn ssh_banner(data: &[u8]) -> bool {
    data.len() >= 6
        && eq_ci(&data[..4], b"SSH-")
        && (data[4] == b'1' || data[4] == b'2')
        && data[5] == b'.'
}

/// True when the segment holding the banner line also holds bytes after it.
fn banner_followed_by_data(data: &[u8]) -> bool {
    data.iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i + 1 < data.len())
}

/// An HTTP request line: a known method, a space, a target, a space and `HTTP/`. When the line
/// is longer than the captured bytes, the method and the start of the target must do.
fn http_request_line(data: &[u8]) -> bool {
    let line = trim_start(data);
    let method = first_word(line);
    if !HTTP_METHODS.contains(&method) {
        return false;
    }
    let rest = &line[method.len()..];
    if rest.first() != Some(&b' ') {
        return false;
    }
    let rest = trim_start(rest);
    let target = first_word(rest);
    if target.is_empty() {
        return false;
    }
    let after = &rest[target.len()..];
    if after.is_empty() {
        // The line was cut by the snippet length.
        return data.len() >= 100;
    }
    let version = trim_start_spaces(after);
    version.starts_with(b"HTTP/") || version.is_empty() && data.len() >= 100
}

/// The request methods Zeek's HTTP signature knows.
const HTTP_METHODS: [&[u8]; 19] = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"TRACE",
    b"CONNECT",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"SUBSCRIBE",
];

/// A known HTTP method at the start of `head`, followed by whitespace, or filling it.
fn http_method_prefix(head: &[u8]) -> bool {
    let method = first_word(head);
    HTTP_METHODS.contains(&method) && (method.len() < head.len() || head.len() == HEAD)
}

fn trim_start_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

/// A word Zeek's FTP analyzer takes for a command: three or more printable characters.
fn ftp_command(word: &[u8]) -> bool {
    word.len() >= 3 && word.iter().all(|b| b.is_ascii_graphic())
}

/// A client line Zeek's IRC analyzer accepts: after an optional `:prefix `, at least three
/// characters.
fn irc_client_line(line: &[u8]) -> bool {
    let line = trim_end(line);
    let rest = if line.first() == Some(&b':') {
        match line.iter().position(|&b| b == b' ') {
            Some(i) => trim_start_spaces(&line[i + 1..]),
            None => return false,
        }
    } else {
        trim_start_spaces(line)
    };
    rest.len() >= 3
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    &s[..s.len() - n]
}

/// The number of an IRC numeric reply.
fn irc_reply_code(line: &[u8]) -> Option<u16> {
    let rest = if line.first() == Some(&b':') {
        &line[line.iter().position(|&b| b == b' ')? + 1..]
    } else {
        line
    };
    let d = rest.get(..3)?;
    std::str::from_utf8(d).ok()?.parse().ok()
}

/// An IRC numeric reply: `[:prefix ]ddd `.
fn irc_reply(line: &[u8]) -> bool {
    let mut rest = line;
    if rest.first() == Some(&b':') {
        let prefix = first_word(rest);
        rest = &rest[prefix.len()..];
        if rest.first() != Some(&b' ') {
            return false;
        }
        rest = &rest[1..];
    }
    rest.len() >= 4 && rest[..3].iter().all(u8::is_ascii_digit) && rest[3] == b' '
}

// ---------------------------------------------------------------------------------------------
// Binary protocol checks.

/// A TLS (or SSLv3) handshake record holding a ServerHello, as Zeek's `dpd_tls_server` has it:
/// record type 22, version 3.0-3.3, handshake type 2, and a server version of 3.0-3.4 (or a
/// TLS 1.3 draft 0x7f..).
fn tls_server_hello(data: &[u8]) -> bool {
    // An alert record may precede the handshake (Zeek's signature allows it).
    let data = match data {
        [0x15, 0x03, 0..=3, hi, lo, ..] => {
            let skip = 5 + usize::from(u16::from_be_bytes([*hi, *lo]));
            data.get(skip..).unwrap_or(&[])
        }
        _ => data,
    };
    matches!(
        data,
        [0x16, 0x03, 0..=3, _, _, 0x02, _, _, _, 0x03, 0..=4, ..]
            | [0x16, 0x03, 0..=3, _, _, 0x02, _, _, _, 0x7f, 0..=0x50, ..]
    )
}

/// An SSLv2 CLIENT-HELLO (two-byte header with the high bit set, message type 1) offering
/// SSL 2.0 or 3.x.
fn ssl2_client_hello(data: &[u8]) -> bool {
    matches!(data, [h, _, 0x01, 0x00, 0x02, ..] | [h, _, 0x01, 0x03, 0..=3, ..] if h & 0x80 != 0)
}

/// An SSLv2 SERVER-HELLO: message type 4, then session-id-hit, certificate type, and version 2.
fn ssl2_server_hello(data: &[u8]) -> bool {
    matches!(data, [h, _, 0x04, 0 | 1, _, 0x00, 0x02, ..] if h & 0x80 != 0)
}

/// A DCE/RPC v5 connection-oriented header (Zeek's `dpd_dce_rpc`): version 5, minor 0 or 1,
/// a PDU type up to 19, and a fragment length at least the 16-byte header.
fn dce_rpc_header(data: &[u8]) -> bool {
    if !matches!(data, [0x05, 0 | 1, 0..=19, ..]) || data.len() < 16 {
        return false;
    }
    // The data representation's first byte says whether integers are little-endian.
    let frag = if data[4] & 0x10 != 0 {
        u16::from_le_bytes([data[8], data[9]])
    } else {
        u16::from_be_bytes([data[8], data[9]])
    };
    frag >= 16
}

/// SMB1/SMB2/SMB3 behind a NetBIOS session header (Zeek's `dpd_smb`), including the SMB3
/// transform header (`\xfdSMB`).
fn smb_header(data: &[u8]) -> bool {
    matches!(data, [0x00, _, _, _, 0xfd..=0xff, b'S', b'M', b'B', ..])
}

/// A Modbus/TCP request: protocol id 0, a length that fits one PDU, and a function code.
fn modbus_request(data: &[u8], full_len: usize) -> bool {
    if data.len() < 8 {
        return false;
    }
    let proto = u16::from_be_bytes([data[2], data[3]]);
    let len = usize::from(u16::from_be_bytes([data[4], data[5]]));
    let function = data[7];
    proto == 0 && (2..=254).contains(&len) && 6 + len <= full_len && (1..=127).contains(&function)
}

/// Reads a DER length at `data[0..]`, returning (length, bytes used).
fn der_len(data: &[u8]) -> Option<(usize, usize)> {
    match *data.first()? {
        n @ 0..=0x7f => Some((usize::from(n), 1)),
        0x81 => Some((usize::from(*data.get(1)?), 2)),
        0x82 => Some((
            usize::from(u16::from_be_bytes([*data.get(1)?, *data.get(2)?])),
            3,
        )),
        0x83 => {
            let (a, b, c) = (*data.get(1)?, *data.get(2)?, *data.get(3)?);
            Some((
                (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c),
                4,
            ))
        }
        _ => None,
    }
}

/// A Kerberos v5 message: an APPLICATION tag of a KDC/AP/KRB message, a SEQUENCE, and the
/// protocol version 5 as the first field (`[0]` or `[1]` INTEGER 5).
fn krb_message(data: &[u8]) -> bool {
    let Some(&tag) = data.first() else {
        return false;
    };
    // AS-REQ 10 .. AP-REP 15, KRB-SAFE 20, KRB-PRIV 21, KRB-CRED 22, KRB-ERROR 30.
    if !matches!(tag, 0x6a..=0x6f | 0x74..=0x76 | 0x7e) {
        return false;
    }
    let Some((_, n)) = der_len(&data[1..]) else {
        return false;
    };
    let rest = &data[1 + n..];
    if rest.first() != Some(&0x30) {
        return false;
    }
    let Some((_, m)) = der_len(&rest[1..]) else {
        return false;
    };
    matches!(&rest[1 + m..], [0xa0 | 0xa1, 0x03, 0x02, 0x01, 0x05, ..])
}

/// A VXLAN header (RFC 7348): the I flag set, reserved fields zero, and room for an inner
/// Ethernet header.
fn vxlan_header(data: &[u8], full_len: usize) -> bool {
    matches!(data, [f, 0, 0, 0, _, _, _, 0, ..] if f & 0x08 != 0 && f & !0x08 == 0)
        && full_len >= 8 + 14
}

/// A Geneve header (RFC 8926): version 0 carrying Ethernet, with its options and an inner
/// Ethernet header inside the datagram.
fn geneve_header(data: &[u8], full_len: usize) -> bool {
    match data {
        [b0, _, 0x65, 0x58, ..] if b0 >> 6 == 0 => {
            let options = usize::from(b0 & 0x3f) * 4;
            full_len >= 8 + options + 14
        }
        _ => false,
    }
}

/// Zeek's `dpd_krb_udp` signature (a TGS-REQ), which enables Kerberos on any UDP port.
fn krb_tgs_req_signature(data: &[u8]) -> bool {
    data.first() == Some(&0x6c)
}

/// A BOOTP/DHCP message: op 1 or 2, a plausible hardware address, and at least the fixed
/// 236-byte header plus the magic cookie (checked too when it was captured).
fn dhcp_message(data: &[u8], full_len: usize) -> bool {
    if data.len() < 4 || full_len < 240 {
        return false;
    }
    let (op, hlen, hops) = (data[0], data[2], data[3]);
    if !(op == 1 || op == 2) || hlen > 16 || hops > 16 {
        return false;
    }
    data.get(236..240)
        .is_none_or(|c| c == [0x63, 0x82, 0x53, 0x63])
}

/// An NTP message: version 1-4 and a mode whose message has the right size (48 bytes for the
/// client/server modes, at least a header for control (6) and private (7) messages).
fn ntp_message(data: &[u8], full_len: usize) -> bool {
    let Some(&b) = data.first() else {
        return false;
    };
    let version = (b >> 3) & 7;
    let mode = b & 7;
    if !(1..=4).contains(&version) {
        return false;
    }
    match mode {
        1..=5 => full_len >= 48,
        6 => full_len >= 12,
        7 => full_len >= 8,
        _ => false,
    }
}

/// A DNS (or NetBIOS name service) message: a sane header and a parseable first question,
/// read with the one DNS view (`decode::dns`). `any_opcode` admits the NetBIOS opcodes
/// (registration, release, WACK, refresh).
fn dns_message(data: &[u8], full_len: usize, any_opcode: bool) -> bool {
    if data.len() < 12 || full_len < 12 {
        return false;
    }
    let m = Message::new_unchecked(data);
    if !any_opcode && !matches!(m.opcode(), 0 | 1 | 2 | 4 | 5) {
        return false;
    }
    let (qd, an, ns, ar) = (m.qdcount(), m.ancount(), m.nscount(), m.arcount());
    if qd > 32 || an > 512 || ns > 512 || ar > 512 {
        return false;
    }
    if qd == 0 {
        // Answer-only messages (mDNS announcements, NetBIOS replies) still need records.
        return u32::from(an) + u32::from(ns) + u32::from(ar) > 0;
    }
    // The first question's name (compression pointers only backwards), at most 254 bytes of
    // text; a name cut by the snippet is accepted when the message is longer than what we
    // hold. Its QTYPE and QCLASS must fit in the message.
    let mut len = NameLen::default();
    match m.read_name(12, &mut len) {
        Ok(end) => len.0 <= 254 && end + 4 <= full_len,
        Err(DnsError::Truncated) => full_len > data.len(),
        Err(DnsError::BadName) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::L4;
    use crate::flow::key::Vlans;
    use crate::flow::summary::SNIPPET_LEN;
    use std::net::{IpAddr, Ipv4Addr};

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;

    fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> PacketSummary {
        summary(
            L4::Tcp {
                src_port: sport,
                dst_port: dport,
                seq: 0,
                ack: 0,
                flags,
                window: 0,
            },
            payload,
        )
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> PacketSummary {
        summary(
            L4::Udp {
                src_port: sport,
                dst_port: dport,
            },
            payload,
        )
    }

    fn summary(l4: L4, payload: &[u8]) -> PacketSummary {
        let n = payload.len().min(SNIPPET_LEN);
        let mut snippet = [0u8; SNIPPET_LEN];
        snippet[..n].copy_from_slice(&payload[..n]);
        PacketSummary {
            ts_ns: 0,
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            ip_proto: if matches!(l4, L4::Tcp { .. }) { 6 } else { 17 },
            l4,
            ip_len: 0,
            payload_len: payload.len() as u32,
            checksum_ok: true,
            vlans: Vlans::NONE,
            carries: None,
            parents: [None; 2],
            snippet_len: n as u16,
            snippet,
            header_cut: false,
        }
    }

    /// Runs a TCP conversation: a handshake, then each (from_orig, payload) as one segment.
    fn tcp_conv(cport: u16, sport: u16, segments: &[(bool, &[u8])]) -> Vec<&'static str> {
        let mut st = ServiceState::default();
        st.observe(&tcp(cport, sport, SYN, b""), true, cport, sport);
        st.observe(&tcp(sport, cport, SYN | ACK, b""), false, cport, sport);
        st.observe(&tcp(cport, sport, ACK, b""), true, cport, sport);
        for (orig, p) in segments {
            let pkt = if *orig {
                tcp(cport, sport, PSH_ACK, p)
            } else {
                tcp(sport, cport, PSH_ACK, p)
            };
            st.observe(&pkt, *orig, cport, sport);
        }
        names(&st)
    }

    fn udp_conv(cport: u16, sport: u16, segments: &[(bool, &[u8])]) -> Vec<&'static str> {
        let mut st = ServiceState::default();
        for (orig, p) in segments {
            let pkt = if *orig {
                udp(cport, sport, p)
            } else {
                udp(sport, cport, p)
            };
            st.observe(&pkt, *orig, cport, sport);
        }
        names(&st)
    }

    fn names(st: &ServiceState) -> Vec<&'static str> {
        st.services().iter().map(Service::as_str).collect()
    }

    /// A DNS query for `www.example.com` A IN (RFC 1035 layout).
    fn dns_query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    #[test]
    fn state_is_small_and_copy() {
        let size = std::mem::size_of::<ServiceState>();
        assert!(size <= 32, "ServiceState grew to {size} bytes");
    }

    #[test]
    fn dns_udp_query_and_reply() {
        let q = dns_query();
        assert_eq!(udp_conv(40000, 53, &[(true, &q)]), ["dns"]);
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        assert_eq!(udp_conv(40000, 53, &[(true, &q), (false, &r)]), ["dns"]);
    }

    #[test]
    fn dns_needs_its_ports_and_a_valid_question() {
        let q = dns_query();
        assert!(
            udp_conv(40000, 9999, &[(true, &q)]).is_empty(),
            "DNS on a random port"
        );
        let mut bad = q.clone();
        bad[12] = 0x50; // label length 80 is not a label nor a pointer
        assert!(
            udp_conv(40000, 53, &[(true, &bad)]).is_empty(),
            "bad label accepted"
        );
        assert!(
            udp_conv(40000, 53, &[(true, b"hello")]).is_empty(),
            "short junk accepted"
        );
    }

    #[test]
    fn mdns_llmnr_and_netbios() {
        let mut mdns = vec![0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        mdns.extend_from_slice(b"\x05gomez\x09_sftp-ssh\x04_tcp\x05local\x00\x00\x10\x00\x01");
        mdns.extend_from_slice(&[0xc0, 0x0c, 0, 0x10, 0, 1, 0, 0, 0x11, 0x94, 0, 1, 0]);
        assert_eq!(udp_conv(5353, 5353, &[(true, &mdns)]), ["dns"]);
        let llmnr = dns_query();
        assert_eq!(udp_conv(55671, 5355, &[(true, &llmnr)]), ["dns"]);
        // NetBIOS name registration (opcode 5) with a 32-byte encoded name.
        let mut nb = vec![0xff, 0x6e, 0x29, 0x10, 0, 1, 0, 0, 0, 0, 0, 1, 0x20];
        nb.extend_from_slice(b"ECFCFHEDDAEDECDDDIDDEEDBEGDEDCAA\x00\x00\x20\x00\x01");
        assert_eq!(udp_conv(137, 137, &[(true, &nb)]), ["dns"]);
    }

    #[test]
    fn dns_over_tcp_with_length_prefix() {
        let q = dns_query();
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        assert_eq!(tcp_conv(40000, 53, &[(true, &framed)]), ["dns"]);
    }

    #[test]
    fn http_on_its_port_and_by_signature_elsewhere() {
        let req: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(tcp_conv(40000, 80, &[(true, req)]), ["http"]);
        assert!(
            tcp_conv(40000, 9000, &[(true, req)]).is_empty(),
            "request alone off-port"
        );
        assert_eq!(
            tcp_conv(40000, 9000, &[(true, req), (false, resp)]),
            ["http"]
        );
        assert!(
            tcp_conv(40000, 80, &[(true, b"GETX / HTTP/1.1\r\n")]).is_empty(),
            "not a method"
        );
    }

    #[test]
    fn http_ignored_on_partial_connection() {
        // No SYN: Zeek's HTTP analyzer skips partial connections.
        let mut st = ServiceState::default();
        let req = tcp(40000, 80, PSH_ACK, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        st.observe(&req, true, 40000, 80);
        let resp = tcp(80, 40000, PSH_ACK, b"HTTP/1.0 304 Not Modified\r\n\r\n");
        st.observe(&resp, false, 40000, 80);
        assert!(
            st.services().is_empty(),
            "partial connection got {:?}",
            names(&st)
        );
    }

    #[test]
    fn http_after_missing_syn_but_seen_syn_ack() {
        let mut st = ServiceState::default();
        st.observe(&tcp(80, 40000, SYN | ACK, b""), false, 40000, 80);
        st.observe(
            &tcp(40000, 80, PSH_ACK, b"GET / HTTP/1.0\r\n\r\n"),
            true,
            40000,
            80,
        );
        assert_eq!(names(&st), ["http"]);
    }

    const CLIENT_HELLO: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 0, 0, 0, 0,
    ];
    const SERVER_HELLO: &[u8] = &[
        0x16, 0x03, 0x03, 0x00, 0x31, 0x02, 0x00, 0x00, 0x2d, 0x03, 0x03, 0, 0, 0, 0,
    ];

    #[test]
    fn tls_needs_the_server_hello() {
        assert!(
            tcp_conv(40000, 443, &[(true, CLIENT_HELLO)]).is_empty(),
            "client only"
        );
        assert_eq!(
            tcp_conv(40000, 8443, &[(true, CLIENT_HELLO), (false, SERVER_HELLO)]),
            ["ssl"]
        );
    }

    #[test]
    fn sslv2_hello() {
        let client: &[u8] = &[0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0, 0, 0, 0x10];
        let server: &[u8] = &[0x83, 0x5c, 0x04, 0x00, 0x01, 0x00, 0x02, 0x03, 0x2a];
        assert_eq!(
            tcp_conv(40000, 443, &[(true, client), (false, server)]),
            ["ssl"]
        );
        assert!(
            tcp_conv(40000, 443, &[(false, server)]).is_empty(),
            "v2 server alone"
        );
    }

    #[test]
    fn imap_starttls_gives_imap_then_ssl() {
        let segs: [(bool, &[u8]); 6] = [
            (false, b"* OK IMAP4rev1 Service Ready\r\n"),
            (true, b"a001 CAPABILITY\r\n"),
            (
                false,
                b"* CAPABILITY IMAP4rev1 STARTTLS\r\na001 OK done\r\n",
            ),
            (true, b"a002 STARTTLS\r\n"),
            (false, b"a002 OK Begin TLS negotiation now\r\n"),
            (true, CLIENT_HELLO),
        ];
        let mut all = segs.to_vec();
        all.push((false, SERVER_HELLO));
        assert_eq!(tcp_conv(49640, 143, &all), ["imap", "ssl"]);
    }

    #[test]
    fn ftp_auth_tls_after_a_long_feat_gives_ftp_then_ssl() {
        let mut segs: Vec<(bool, &[u8])> =
            vec![(false, b"220 (vsFTPd 3.0.5)\r\n"), (true, b"FEAT\r\n")];
        // More server packets than the inspection window before the go-ahead.
        for _ in 0..10 {
            segs.push((false, b" EPSV\r\n"));
        }
        segs.extend([
            (true, &b"AUTH TLS\r\n"[..]),
            (false, b"234 Proceed with negotiation.\r\n"),
            (true, CLIENT_HELLO),
            (false, SERVER_HELLO),
        ]);
        assert_eq!(tcp_conv(40284, 21, &segs), ["ftp", "ssl"]);
        // Without the 234 go-ahead, no TLS is looked for mid-stream.
        let refused: Vec<(bool, &[u8])> = vec![
            (false, b"220 ready\r\n"),
            (true, b"AUTH TLS\r\n"),
            (false, b"534 no\r\n"),
            (false, SERVER_HELLO),
        ];
        assert_eq!(tcp_conv(40284, 21, &refused), ["ftp"]);
    }

    #[test]
    fn irc_starttls_waits_for_670() {
        let ok: [(bool, &[u8]); 4] = [
            (true, b"STARTTLS\r\n"),
            (
                false,
                b":irc.example 670  :STARTTLS successful, go ahead\r\n",
            ),
            (true, CLIENT_HELLO),
            (false, SERVER_HELLO),
        ];
        assert_eq!(tcp_conv(55123, 6667, &ok), ["irc", "ssl"]);
        let refused: [(bool, &[u8]); 3] = [
            (true, b"STARTTLS\r\n"),
            (false, b":irc.example 691 :STARTTLS failure\r\n"),
            (false, SERVER_HELLO),
        ];
        assert_eq!(tcp_conv(55123, 6667, &refused), ["irc"]);
    }

    #[test]
    fn mysql_ssl_request_gives_mysql_then_ssl() {
        let greeting: &[u8] = b"j\x00\x00\x00\x0a5.5.5-10.0.36-MariaDB\x00";
        let ssl_request: &[u8] = b" \x00\x00\x01\x85\xae? \x00\x00\x00\x01-\x00\x00\x00";
        let login: &[u8] = b" \x00\x00\x01\x85\xa6? \x00\x00\x00\x01-\x00\x00\x00";
        let segs = [
            (false, greeting),
            (true, ssl_request),
            (true, CLIENT_HELLO),
            (false, SERVER_HELLO),
        ];
        assert_eq!(tcp_conv(59272, 3306, &segs), ["mysql", "ssl"]);
        // A plain login (no CLIENT_SSL) is MySQL only.
        let plain = [(false, greeting), (true, login), (false, SERVER_HELLO)];
        assert_eq!(tcp_conv(59272, 3306, &plain), ["mysql"]);
    }

    #[test]
    fn http_connect_then_tls_gives_http_then_ssl() {
        let segs: [(bool, &[u8]); 4] = [
            (
                true,
                b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            ),
            (false, b"HTTP/1.1 200 Connection established\r\n\r\n"),
            (true, CLIENT_HELLO),
            (false, SERVER_HELLO),
        ];
        assert_eq!(tcp_conv(40000, 80, &segs), ["http", "ssl"]);
        let mut denied = segs;
        denied[1] = (false, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n");
        assert_eq!(tcp_conv(40000, 80, &denied), ["http"]);
    }

    #[test]
    fn http_request_sent_a_byte_at_a_time_on_another_port() {
        let segs: [(bool, &[u8]); 6] = [
            (true, b"G"),
            (true, b"E"),
            (true, b"T / HTTP"),
            (true, b"/1.0\n\n"),
            (false, b"HTTP/1.0 200 OK\r\n\r\n"),
            (false, b"Hello\n"),
        ];
        assert_eq!(tcp_conv(59406, 27272, &segs), ["http"]);
        // The same bytes that never spell a method stay unknown.
        let mut junk = segs;
        junk[1] = (true, b"X");
        assert!(tcp_conv(59406, 27272, &junk).is_empty());
    }

    #[test]
    fn rdpeudp_syn_then_synack() {
        let syn: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x00, 0x40, 0x00, 0x01, 0, 0, 0, 0];
        let synack: &[u8] = &[0x0b, 0x12, 0x7f, 0x15, 0x00, 0x40, 0x00, 0x05, 0, 0, 0, 0];
        assert_eq!(
            udp_conv(61291, 3389, &[(true, syn), (false, synack)]),
            ["rdpeudp"]
        );
        // A SYN alone, or a SYN whose snSourceAck is not the initial value, confirms nothing.
        assert!(udp_conv(61291, 3389, &[(true, syn)]).is_empty());
        let mut bad = syn.to_vec();
        bad[0] = 0;
        assert!(udp_conv(61291, 3389, &[(true, &bad), (false, synack)]).is_empty());
    }

    #[test]
    fn ssh_needs_both_banners_and_key_exchange() {
        let c: &[u8] = b"SSH-2.0-OpenSSH_5.2\r\n";
        let s: &[u8] = b"SSH-2.0-OpenSSH_5.9p1 Debian-5ubuntu1\r\n";
        let kexinit: &[u8] = &[0, 0, 3, 0x1c, 0x0a, 0x14, 1, 2, 3];
        let full = [(false, s), (true, c), (false, kexinit), (true, kexinit)];
        assert_eq!(tcp_conv(56940, 22, &full), ["ssh"]);
        assert_eq!(tcp_conv(40184, 41644, &full), ["ssh"], "ssh off-port");
        // A client-side-only capture (ssh-half-duplex-client) is not confirmed.
        assert!(tcp_conv(56940, 22, &[(true, c), (true, kexinit)]).is_empty());
        assert!(tcp_conv(56940, 22, &[(false, b"HTTP/1.1 400 Bad\r\n"), (true, c)]).is_empty());
    }

    #[test]
    fn ftp_greeting_and_user() {
        let segs: [(bool, &[u8]); 3] = [
            (false, b"220 (vsFTPd 2.3.4)\r\n"),
            (true, b"USER anonymous\r\n"),
            (false, b"331 Please specify the password.\r\n"),
        ];
        assert_eq!(tcp_conv(59762, 21, &segs), ["ftp"]);
        assert_eq!(tcp_conv(59762, 2100, &segs), ["ftp"], "signature with 331");
        assert!(
            tcp_conv(59762, 2100, &segs[..2]).is_empty(),
            "off-port needs 230/331"
        );
    }

    #[test]
    fn smtp_greeting_and_ehlo() {
        let segs: [(bool, &[u8]); 2] = [
            (false, b"220 mail.example.com ESMTP Postfix\r\n"),
            (true, b"EHLO client.example.com\r\n"),
        ];
        assert_eq!(tcp_conv(40000, 25, &segs), ["smtp"]);
        assert!(
            tcp_conv(40000, 25, &segs[1..]).is_empty(),
            "EHLO without greeting"
        );
    }

    #[test]
    fn pop3_ok_and_user() {
        let segs: [(bool, &[u8]); 2] = [
            (
                false,
                b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
            ),
            (true, b"USER mrose\r\n"),
        ];
        assert_eq!(tcp_conv(26272, 110, &segs), ["pop3"]);
        assert!(tcp_conv(26272, 110, &segs[..1]).is_empty(), "banner alone");
    }

    #[test]
    fn irc_registration_and_numeric_reply() {
        let segs: [(bool, &[u8]); 2] = [
            (true, b"NICK alice\r\nUSER alice 0 * :Alice\r\n"),
            (
                false,
                b":irc.example.net 001 alice :Welcome to the IRC network\r\n",
            ),
        ];
        assert_eq!(tcp_conv(40000, 6667, &segs), ["irc"]);
        // Off IRC's ports only the signature (both sides) confirms; on them, Zeek's analyzer
        // is attached by port and confirms on the client's first line.
        assert_eq!(tcp_conv(40000, 7000, &segs), ["irc"]);
        assert!(tcp_conv(40000, 7000, &segs[..1]).is_empty(), "client alone");
        assert_eq!(tcp_conv(40000, 6667, &segs[..1]), ["irc"]);
    }

    #[test]
    fn modbus_read_holding_registers() {
        let req: &[u8] = &[
            0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x11, 0x03, 0x00, 0x6b, 0x00, 0x03,
        ];
        assert_eq!(tcp_conv(40000, 502, &[(true, req)]), ["modbus"]);
        let mut bad = req.to_vec();
        bad[3] = 1; // protocol id must be 0
        assert!(tcp_conv(40000, 502, &[(true, &bad)]).is_empty());
    }

    #[test]
    fn dce_rpc_bind() {
        let bind: &[u8] = &[
            0x05, 0x00, 0x0b, 0x03, 0x10, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x01, 0, 0, 0,
            0xb8, 0x10,
        ];
        assert_eq!(tcp_conv(40000, 135, &[(true, bind)]), ["dce_rpc"]);
        assert_eq!(tcp_conv(40000, 49152, &[(true, bind)]), ["dce_rpc"]);
    }

    #[test]
    fn smb1_and_smb2_negotiate() {
        let smb1: &[u8] = &[
            0x00, 0x00, 0x00, 0x54, 0xff, b'S', b'M', b'B', 0x72, 0, 0, 0,
        ];
        let smb2: &[u8] = &[
            0x00, 0x00, 0x00, 0x66, 0xfe, b'S', b'M', b'B', 0x40, 0, 0, 0,
        ];
        assert_eq!(tcp_conv(40000, 445, &[(true, smb1)]), ["smb"]);
        assert_eq!(tcp_conv(40000, 139, &[(true, smb2)]), ["smb"]);
    }

    /// An AS-REQ's first bytes: [APPLICATION 10] SEQUENCE { [1] pvno 5, [2] msg-type 10 ...
    const AS_REQ: &[u8] = &[
        0x6a, 0x81, 0xa0, 0x30, 0x81, 0x9d, 0xa1, 0x03, 0x02, 0x01, 0x05, 0xa2, 0x03, 0x02, 0x01,
        0x0a,
    ];

    #[test]
    fn kerberos_udp_and_tcp() {
        assert_eq!(udp_conv(40000, 88, &[(true, AS_REQ)]), ["krb"]);
        let mut framed = (AS_REQ.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(AS_REQ);
        assert_eq!(tcp_conv(40000, 88, &[(true, &framed)]), ["krb_tcp"]);
        assert!(
            udp_conv(40000, 88, &[(true, &AS_REQ[..8])]).is_empty(),
            "cut before pvno"
        );
    }

    #[test]
    fn dhcp_discover() {
        let mut d = vec![0u8; 300];
        d[0] = 1; // BOOTREQUEST
        d[1] = 1; // Ethernet
        d[2] = 6;
        d[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
        assert_eq!(udp_conv(68, 67, &[(true, &d)]), ["dhcp"]);
        assert!(
            udp_conv(68, 67, &[(true, &d[..100])]).is_empty(),
            "short BOOTP"
        );
    }

    #[test]
    fn ntp_client_and_server() {
        let mut c = vec![0u8; 48];
        c[0] = 0x23; // version 4, mode 3 (client)
        let mut s = c.clone();
        s[0] = 0x24; // version 4, mode 4 (server)
        assert_eq!(udp_conv(123, 123, &[(true, &c), (false, &s)]), ["ntp"]);
        let mut bad = c.clone();
        bad[0] = 0x3b; // version 7
        assert!(udp_conv(40000, 123, &[(true, &bad)]).is_empty());
    }

    #[test]
    fn tunnel_outer_connection_gets_the_tunnel_service() {
        let mut st = ServiceState::default();
        let mut p = udp(40000, 4789, &[0x08, 0, 0, 0, 0, 0, 0x01, 0]);
        p.carries = Some(TunnelKind::Vxlan);
        st.observe(&p, true, 40000, 4789);
        assert_eq!(names(&st), ["vxlan"]);
        let mut st = ServiceState::default();
        p.carries = Some(TunnelKind::Gre);
        st.observe(&p, true, 40000, 4789);
        assert!(st.services().is_empty(), "GRE is no service");
    }

    #[test]
    fn vxlan_and_geneve_headers_without_ip_inside() {
        // VXLAN carrying ARP: the decoder does not mark it, the header alone confirms.
        let mut v = vec![0x08, 0, 0, 0, 0, 0, 0x7b, 0];
        v.extend_from_slice(&[0xff; 6]);
        v.extend_from_slice(&[
            0xba, 0x09, 0x2b, 0x6e, 0xf8, 0xbe, 0x08, 0x06, 0, 1, 8, 0, 6, 4,
        ]);
        assert_eq!(udp_conv(39924, 4789, &[(true, &v)]), ["vxlan"]);
        let mut bad = v.clone();
        bad[1] = 1;
        assert!(
            udp_conv(39924, 4789, &[(true, &bad)]).is_empty(),
            "reserved bits set"
        );
        let mut g = vec![0x00, 0x00, 0x65, 0x58, 0, 0, 0x0a, 0];
        g.extend_from_slice(&v[8..]);
        assert_eq!(udp_conv(40000, 6081, &[(true, &g)]), ["geneve"]);
    }

    #[test]
    fn random_payload_gives_nothing() {
        let junk: Vec<u8> = (0..160u32)
            .map(|i| (i.wrapping_mul(73) % 251) as u8)
            .collect();
        assert!(tcp_conv(40000, 80, &[(true, &junk), (false, &junk)]).is_empty());
        assert!(udp_conv(40000, 53, &[(true, &junk)]).is_empty());
    }
}

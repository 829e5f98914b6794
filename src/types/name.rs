//! Host names as records and evidence carry them, and what proved them.

/// Longest name kept (a DNS name in text form is at most 253 bytes; SNI and Host are cut).
pub const NAME_CAP: usize = 255;

/// A host name stored inline: lower-case, without a trailing dot. `Copy` and fixed-size so
/// that evidence, replication messages and records never allocate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    len: u8,
    buf: [u8; NAME_CAP],
}

impl Default for Name {
    fn default() -> Name {
        Name {
            len: 0,
            buf: [0; NAME_CAP],
        }
    }
}

impl Name {
    /// A name from text: ASCII letters are lower-cased, a trailing dot is dropped, and text
    /// longer than [`NAME_CAP`] is cut.
    pub fn new(s: &[u8]) -> Name {
        let mut n = Name::default();
        let s = s.strip_suffix(b".").unwrap_or(s);
        for &b in s.iter().take(NAME_CAP) {
            n.push_byte(b);
        }
        n
    }

    /// Appends one byte (lower-cased); false when the name is full.
    #[inline]
    pub fn push_byte(&mut self, b: u8) -> bool {
        if self.len as usize >= NAME_CAP {
            return false;
        }
        self.buf[self.len as usize] = b.to_ascii_lowercase();
        self.len += 1;
        true
    }

    /// Appends one byte as it is (DNS names as a message spells them); false when full.
    #[inline]
    pub fn push_raw(&mut self, b: u8) -> bool {
        if self.len as usize >= NAME_CAP {
            return false;
        }
        self.buf[self.len as usize] = b;
        self.len += 1;
        true
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the name (keeps the buffer).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// What proved a mapping. The order is the order of `namecache.log`'s per-source counts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum NameSource {
    /// A DNS A record whose owner is the queried name.
    A = 0,
    /// A DNS AAAA record whose owner is the queried name.
    Aaaa = 1,
    /// A DNS A/AAAA record reached from the queried name through a CNAME chain; the name is
    /// the queried one.
    Cname = 2,
    /// A DNS PTR answer (in-addr.arpa / ip6.arpa).
    Ptr = 3,
    /// An mDNS answer (UDP 5353).
    Mdns = 4,
    /// An LLMNR answer (UDP 5355).
    Llmnr = 5,
    /// The server name of a TLS ClientHello, naming the server it was sent to.
    Sni = 6,
    /// The Host header of an HTTP/1.x request, naming the server it was sent to.
    Http = 7,
    /// A DHCP host name (option 12), naming the client's address.
    Dhcp = 8,
}

impl NameSource {
    /// Every source, in order.
    pub const ALL: [NameSource; 9] = [
        NameSource::A,
        NameSource::Aaaa,
        NameSource::Cname,
        NameSource::Ptr,
        NameSource::Mdns,
        NameSource::Llmnr,
        NameSource::Sni,
        NameSource::Http,
        NameSource::Dhcp,
    ];

    /// The spelling in `orig_name_src` / `resp_name_src`.
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::A => "A",
            NameSource::Aaaa => "AAAA",
            NameSource::Cname => "CNAME",
            NameSource::Ptr => "PTR",
            NameSource::Mdns => "MDNS",
            NameSource::Llmnr => "LLMNR",
            NameSource::Sni => "SNI",
            NameSource::Http => "HTTP",
            NameSource::Dhcp => "DHCP",
        }
    }

    /// The source stored as a byte (snapshots).
    pub fn from_u8(v: u8) -> Option<NameSource> {
        NameSource::ALL.get(v as usize).copied()
    }
}

//! QUIC Initial packets, as a passive observer reads them: long headers, variable-length
//! integers, Initial packet protection (keys anyone can derive from the packet itself) and the
//! frames of a client's Initial; and the plaintext CHLO of Google QUIC.
//!
//! - IETF QUIC: v1 (RFC 9000/9001), v2 (RFC 9369: its own salt, `quicv2` key labels and long
//!   packet type bits) and the drafts still seen (draft-23..34, with the salt each draft
//!   defined). The Initial secret is HKDF-Extract(salt, client's Destination Connection ID);
//!   the client's secret is HKDF-Expand-Label(secret, "client in"), and from it the AES-128-GCM
//!   key, IV and header-protection key (RFC 9001 §5.2, §5.4). Google's Q050, T050 and T051
//!   use the same scheme with salts of their own; Facebook's mvfst versions use draft-27's.
//! - Google QUIC with a plaintext handshake (Q024..Q046): the CHLO message's tag-value map
//!   carries the server name under tag `SNI`.
//!
//! Crypto is `ring`'s (HKDF-SHA256, AES-128-GCM, the QUIC header-protection mask); nothing
//! here implements a cipher. Views follow the house pattern: `new_checked` validates every
//! length against the bytes present, after which no accessor can panic; errors are `Copy`.

use super::cursor::Cursor;
use ring::aead::{self, quic as hp, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// Why a datagram gave no Initial plaintext (a `Copy` value for counters, never a log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicError {
    /// Fewer bytes than the header or a length field says.
    Truncated,
    /// Not a long-header packet, or a version this module has no Initial scheme for.
    NotInitial,
    /// A connection ID longer than the version allows.
    BadConnectionId,
    /// Header protection or AEAD authentication failed: not a client Initial (a server's, or
    /// damaged).
    Decrypt,
}

/// QUIC versions as their Initial packets are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// RFC 9000 (0x00000001).
    V1,
    /// RFC 9369 (0x6b3343cf).
    V2,
    /// IETF draft-N (0xff0000NN).
    Draft(u8),
    /// Google QUIC Q050: TLS-like Initial protection, a CHLO inside.
    Q050,
    /// Google QUIC T050 / T051: TLS-like Initial protection, a TLS ClientHello inside.
    T050,
    T051,
    /// Facebook's mvfst (0xfaceb002, 0xfaceb00e): draft-27 Initials.
    Mvfst(u32),
    /// Google QUIC Q0NN with a plaintext handshake (Q024..Q046).
    GooglePlain(u8),
    /// Anything else, kept as it came.
    Unknown(u32),
}

const V1_SALT: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const V2_SALT: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// draft-ietf-quic-tls-29 §5.2 (used by drafts 29 to 32).
const DRAFT29_SALT: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
/// draft-ietf-quic-tls-23 §5.2 (used by drafts 23 to 28).
const DRAFT23_SALT: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
];
const Q050_SALT: [u8; 20] = [
    0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94, 0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0,
    0xd3, 0xb5, 0x6b, 0x45,
];
const T050_SALT: [u8; 20] = [
    0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c,
    0x60, 0x48, 0x83, 0x10,
];
const T051_SALT: [u8; 20] = [
    0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc,
    0xda, 0x6e, 0x03, 0x3d,
];

impl Version {
    pub fn from_raw(v: u32) -> Version {
        match v {
            0x0000_0001 => Version::V1,
            0x6b33_43cf => Version::V2,
            0xff00_0017..=0xff00_0022 => Version::Draft(v as u8),
            0x5130_3530 => Version::Q050,
            0x5430_3530 => Version::T050,
            0x5430_3531 => Version::T051,
            0xface_b002 | 0xface_b00e => Version::Mvfst(v),
            _ => {
                // "Q0NN" in ASCII: the plaintext-handshake versions are Q024..Q046.
                let b = v.to_be_bytes();
                if b[0] == b'Q' && b[1] == b'0' && b[2].is_ascii_digit() && b[3].is_ascii_digit() {
                    let n = (b[2] - b'0') * 10 + (b[3] - b'0');
                    if (24..=46).contains(&n) {
                        return Version::GooglePlain(n);
                    }
                }
                Version::Unknown(v)
            }
        }
    }

    /// The salt of the version's Initial secret; `None` for versions without Initial
    /// protection (plaintext Google QUIC) or unknown ones.
    fn salt(self) -> Option<&'static [u8; 20]> {
        Some(match self {
            Version::V1 => &V1_SALT,
            Version::V2 => &V2_SALT,
            // draft-33 and draft-34 already used the salt RFC 9001 kept.
            Version::Draft(33..=34) => &V1_SALT,
            Version::Draft(29..=32) => &DRAFT29_SALT,
            Version::Draft(23..=28) | Version::Mvfst(_) => &DRAFT23_SALT,
            Version::Q050 => &Q050_SALT,
            Version::T050 => &T050_SALT,
            Version::T051 => &T051_SALT,
            _ => return None,
        })
    }

    /// The HKDF labels of the packet key, IV and header-protection key.
    fn labels(self) -> [&'static [u8]; 3] {
        match self {
            Version::V2 => [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
            _ => [b"quic key", b"quic iv", b"quic hp"],
        }
    }

    /// The long packet type bits (0x30 of the first byte) of an Initial packet: 0 everywhere
    /// but v2, whose types are rotated (RFC 9369 §3.2: Initial is 0b01).
    fn initial_type(self) -> u8 {
        match self {
            Version::V2 => 1,
            _ => 0,
        }
    }

    /// True for the Google versions, whose Initials carry Google's frame numbering.
    pub fn is_google(self) -> bool {
        matches!(
            self,
            Version::Q050 | Version::T050 | Version::T051 | Version::GooglePlain(_)
        )
    }

    /// True when the Initial's handshake data is a TLS ClientHello (not a Google CHLO).
    pub fn carries_tls(self) -> bool {
        !matches!(self, Version::Q050 | Version::GooglePlain(_))
    }
}

/// A QUIC variable-length integer (RFC 9000 §16) at the start of `b`: its value and length.
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, len))
}

/// QUIC's reads beside the shared cursor's.
impl Cursor<'_> {
    fn varint(&mut self) -> Option<u64> {
        let (v, n) = varint(self.b.get(self.pos..)?)?;
        self.pos += n;
        Some(v)
    }

    /// A varint that must fit the bytes left, as a length.
    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }
}

/// An IETF-style long-header Initial packet (v1, v2, drafts, Q050/T05x) at the start of a
/// datagram, with its fields located and checked against the bytes present.
#[derive(Clone, Copy, Debug)]
pub struct InitialPacket<'a> {
    b: &'a [u8],
    version: Version,
    dcid: (usize, usize),
    scid: (usize, usize),
    /// Offset of the (protected) packet number.
    pn_offset: usize,
    /// End of this packet in the datagram (packets can be coalesced after it).
    end: usize,
}

/// Longest connection ID of QUIC v1 and later (RFC 9000 §17.2).
const MAX_CID: usize = 20;
/// Header-protection sample length (RFC 9001 §5.4.2).
const SAMPLE_LEN: usize = 16;
/// AEAD tag length of AES-128-GCM.
const TAG_LEN: usize = 16;

impl<'a> InitialPacket<'a> {
    /// Locates the fields of the Initial packet at the start of `b`.
    pub fn new_checked(b: &'a [u8]) -> Result<InitialPacket<'a>, QuicError> {
        let mut r = Cursor::new(b);
        let first = r.u8().ok_or(QuicError::Truncated)?;
        if first & 0x80 == 0 {
            return Err(QuicError::NotInitial);
        }
        let raw = r.take(4).ok_or(QuicError::Truncated)?;
        let version = Version::from_raw(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]));
        if version.salt().is_none() {
            return Err(QuicError::NotInitial);
        }
        if (first >> 4) & 0x03 != version.initial_type() {
            return Err(QuicError::NotInitial);
        }
        let dlen = usize::from(r.u8().ok_or(QuicError::Truncated)?);
        if dlen > MAX_CID {
            return Err(QuicError::BadConnectionId);
        }
        let dcid = (r.pos, dlen);
        r.take(dlen).ok_or(QuicError::Truncated)?;
        let slen = usize::from(r.u8().ok_or(QuicError::Truncated)?);
        if slen > MAX_CID {
            return Err(QuicError::BadConnectionId);
        }
        let scid = (r.pos, slen);
        r.take(slen).ok_or(QuicError::Truncated)?;
        let token = r.len().ok_or(QuicError::Truncated)?;
        r.take(token).ok_or(QuicError::Truncated)?;
        let length = r.len().ok_or(QuicError::Truncated)?;
        let pn_offset = r.pos;
        let end = pn_offset.checked_add(length).ok_or(QuicError::Truncated)?;
        // The sample starts 4 bytes after the packet number's offset whatever its length.
        if end > b.len() || length < 4 + SAMPLE_LEN {
            return Err(QuicError::Truncated);
        }
        Ok(InitialPacket {
            b,
            version,
            dcid,
            scid,
            pn_offset,
            end,
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The Destination Connection ID: for a client's Initial, what its keys derive from.
    pub fn dcid(&self) -> &'a [u8] {
        &self.b[self.dcid.0..self.dcid.0 + self.dcid.1]
    }

    pub fn scid(&self) -> &'a [u8] {
        &self.b[self.scid.0..self.scid.0 + self.scid.1]
    }

    /// The length of this packet within its datagram; the next coalesced packet starts here.
    pub fn len(&self) -> usize {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// The whole packet, protected.
    pub fn bytes(&self) -> &'a [u8] {
        &self.b[..self.end]
    }
}

/// Output length for `ring`'s HKDF expansion.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 §7.1) with an empty context, into `out`.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// The raw client Initial key material of `version` for a client's Destination Connection
/// ID: (packet key, IV, header-protection key). `None` for versions without Initial
/// protection.
pub fn client_initial_secrets(
    version: Version,
    dcid: &[u8],
) -> Option<([u8; 16], [u8; 12], [u8; 16])> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, version.salt()?);
    let initial = salt.extract(dcid);
    let mut client = [0u8; 32];
    expand_label(&initial, b"client in", &mut client)?;
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &client);
    let [lk, liv, lhp] = version.labels();
    let (mut key, mut iv, mut hpk) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    expand_label(&client, lk, &mut key)?;
    expand_label(&client, liv, &mut iv)?;
    expand_label(&client, lhp, &mut hpk)?;
    Some((key, iv, hpk))
}

/// A client's Initial keys, ready to open packets.
pub struct InitialKeys {
    key: LessSafeKey,
    iv: [u8; 12],
    hp: hp::HeaderProtectionKey,
}

impl InitialKeys {
    /// The keys a client of `version` protects its Initials with, for Destination Connection
    /// ID `dcid`.
    pub fn client(version: Version, dcid: &[u8]) -> Option<InitialKeys> {
        let (key, iv, hpk) = client_initial_secrets(version, dcid)?;
        Some(InitialKeys {
            key: LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: hp::HeaderProtectionKey::new(&hp::AES_128, &hpk).ok()?,
        })
    }

    /// The header-protection mask for a sample (RFC 9001 §5.4.3).
    pub fn mask(&self, sample: &[u8]) -> Option<[u8; 5]> {
        self.hp.new_mask(sample).ok()
    }

    /// Removes header protection and decrypts `pkt` into `scratch` (which must hold the
    /// packet); returns the plaintext payload (its frames) and the packet number.
    pub fn open<'s>(
        &self,
        pkt: &InitialPacket<'_>,
        scratch: &'s mut [u8],
    ) -> Result<(&'s [u8], u32), QuicError> {
        let bytes = pkt.bytes();
        let buf = scratch.get_mut(..bytes.len()).ok_or(QuicError::Truncated)?;
        buf.copy_from_slice(bytes);
        let pn_off = pkt.pn_offset;
        let sample = &buf[pn_off + 4..pn_off + 4 + SAMPLE_LEN];
        let mask = self.mask(sample).ok_or(QuicError::Decrypt)?;
        // Long header: the low 4 bits of the first byte are protected.
        buf[0] ^= mask[0] & 0x0f;
        let pn_len = usize::from(buf[0] & 0x03) + 1;
        let mut pn = 0u32;
        for i in 0..pn_len {
            buf[pn_off + i] ^= mask[1 + i];
            pn = (pn << 8) | u32::from(buf[pn_off + i]);
        }
        let header_len = pn_off + pn_len;
        if buf.len() < header_len + TAG_LEN {
            return Err(QuicError::Truncated);
        }
        // The nonce is the IV with the packet number XORed into its last bytes. A client's
        // first Initials have small packet numbers, so the truncated number is the full one.
        let mut nonce = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[8 + i] ^= b;
        }
        let (header, body) = buf.split_at_mut(header_len);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header[..]),
                body,
            )
            .map_err(|_| QuicError::Decrypt)?;
        Ok((plain, pn))
    }

    /// Protects `payload` as an Initial of `version` with packet number `pn` (4 bytes),
    /// `dcid` and no token: the inverse of [`open`](Self::open), for tests and the fuzz
    /// corpus.
    pub fn seal(&self, version: Version, dcid: &[u8], pn: u32, payload: &[u8]) -> Vec<u8> {
        let raw = version_raw(version);
        let mut p = vec![0xc3 | (version.initial_type() << 4)];
        p.extend_from_slice(&raw.to_be_bytes());
        p.push(dcid.len() as u8);
        p.extend_from_slice(dcid);
        p.push(0);
        p.push(0); // token length
        let length = 4 + payload.len() + TAG_LEN;
        p.extend_from_slice(&(0x4000u16 | length as u16).to_be_bytes());
        let pn_off = p.len();
        p.extend_from_slice(&pn.to_be_bytes());
        let mut body = payload.to_vec();
        let mut nonce = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[8 + i] ^= b;
        }
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&p[..]),
                &mut body,
            )
            .expect("sealing a small payload cannot fail");
        p.extend_from_slice(&body);
        let mask = self
            .mask(&p[pn_off + 4..pn_off + 4 + SAMPLE_LEN])
            .expect("a 16-byte sample");
        p[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            p[pn_off + i] ^= mask[1 + i];
        }
        p
    }
}

/// The wire number of a version (inverse of [`Version::from_raw`]).
pub fn version_raw(v: Version) -> u32 {
    match v {
        Version::V1 => 1,
        Version::V2 => 0x6b33_43cf,
        Version::Draft(n) => 0xff00_0000 | u32::from(n),
        Version::Q050 => 0x5130_3530,
        Version::T050 => 0x5430_3530,
        Version::T051 => 0x5430_3531,
        Version::Mvfst(v) => v,
        Version::GooglePlain(n) => u32::from_be_bytes([b'Q', b'0', b'0' + n / 10, b'0' + n % 10]),
        Version::Unknown(v) => v,
    }
}

/// A frame of an Initial packet's plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One or more PADDING bytes.
    Padding,
    Ping,
    Ack,
    /// Handshake data at an offset of the Initial crypto stream.
    Crypto {
        offset: u64,
        data: &'a [u8],
    },
    ConnectionClose,
}

/// The frames of an Initial's plaintext, in order. Frames an Initial may not carry end the
/// iteration with an error (as a receiver would close the connection).
pub struct Frames<'a> {
    r: Cursor<'a>,
    google: bool,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// `version` selects the frame numbering (Google's Q050/T05x put CRYPTO at 0x08).
    pub fn new(plain: &'a [u8], version: Version) -> Frames<'a> {
        Frames {
            r: Cursor::new(plain),
            google: version.is_google(),
            failed: false,
        }
    }

    fn next_frame(&mut self) -> Option<Frame<'a>> {
        let r = &mut self.r;
        let ty = r.varint()?;
        match ty {
            0x00 => {
                while r.b.get(r.pos) == Some(&0) {
                    r.pos += 1;
                }
                Some(Frame::Padding)
            }
            0x01 => Some(Frame::Ping),
            0x08 if self.google => {
                let offset = r.varint()?;
                let len = r.len()?;
                Some(Frame::Crypto {
                    offset,
                    data: r.take(len)?,
                })
            }
            0x06 if !self.google => {
                let offset = r.varint()?;
                let len = r.len()?;
                Some(Frame::Crypto {
                    offset,
                    data: r.take(len)?,
                })
            }
            0x02 | 0x03 if !self.google => {
                r.varint()?; // largest acknowledged
                r.varint()?; // ack delay
                let ranges = r.varint()?;
                r.varint()?; // first range
                for _ in 0..ranges {
                    r.varint()?; // gap
                    r.varint()?; // range length
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        r.varint()?; // ECN counts
                    }
                }
                Some(Frame::Ack)
            }
            0x1c if !self.google => {
                r.varint()?; // error code
                r.varint()?; // frame type
                let n = r.len()?;
                r.take(n)?;
                Some(Frame::ConnectionClose)
            }
            _ => None,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, QuicError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.pos >= self.r.b.len() {
            return None;
        }
        match self.next_frame() {
            Some(f) => Some(Ok(f)),
            None => {
                self.failed = true;
                Some(Err(QuicError::Truncated))
            }
        }
    }
}

/// The CHLO message of a Google QUIC client packet with a plaintext handshake (Q024..Q046),
/// located as nDPI and Wireshark do: behind the public header and the 12-byte message hash
/// (null encryption), the first STREAM frame on stream 1 (the crypto stream), possibly after
/// an ACK frame of an earlier packet.
pub fn gquic_plain_chlo(b: &[u8]) -> Option<(Version, &[u8])> {
    let first = *b.first()?;
    let (version, payload) = if first & 0x80 != 0 {
        // Q046: an IETF-invariant long header with 4-bit connection ID lengths (an 8-byte
        // destination, no source ID: 0x50), a 4-byte packet number, then the hash.
        let raw = b.get(1..5)?;
        let v = Version::from_raw(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]));
        if v != Version::GooglePlain(46) || *b.get(5)? != 0x50 {
            return None;
        }
        (v, b.get(30..)?)
    } else {
        // Q024..Q043 public header: flags with the version bit (0x01) and an 8-byte connection
        // ID (0x08), the version, a 1-byte packet number (flags 0x30 clear), the hash.
        if first & 0x09 != 0x09 || first & 0x30 != 0 {
            return None;
        }
        let raw = b.get(9..13)?;
        let v = Version::from_raw(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]));
        let Version::GooglePlain(n) = v else {
            return None;
        };
        if n > 43 {
            return None;
        }
        // Before Q034 a private-flags byte follows the hash.
        let start = if n < 34 { 27 } else { 26 };
        (v, b.get(start..)?)
    };
    let Version::GooglePlain(n) = version else {
        return None;
    };
    let mut r = Cursor::new(payload);
    while r.b.get(r.pos) == Some(&0) {
        r.pos += 1;
    }
    let mut ty = r.u8()?;
    // An ACK of the server's packets (a later CHLO): skip the common fixed-size forms.
    if ty == 0x40 || ty == 0x60 {
        r.take(if ty == 0x40 { 5 } else { 8 })?;
        ty = r.u8()?;
    }
    // STREAM frame: 1fdooo ss; stream ID of 1 byte, data length present.
    if ty & 0xe0 != 0xa0 || ty & 0x03 != 0 {
        return None;
    }
    if r.u8()? != 0x01 {
        return None;
    }
    let off_len = match (ty >> 2) & 0x07 {
        0 => 0,
        k => usize::from(k) + 1,
    };
    r.take(off_len)?;
    let lb = r.take(2)?;
    // Data lengths were little-endian until Q039.
    let len = if n >= 39 {
        u16::from_be_bytes([lb[0], lb[1]])
    } else {
        u16::from_le_bytes([lb[0], lb[1]])
    };
    let data = r.take(usize::from(len))?;
    data.starts_with(b"CHLO").then_some((version, data))
}

/// The value of `tag` in a Google QUIC handshake message (CHLO): a tag count (u16 little
/// endian), two bytes of padding, then (tag, end offset u32 little endian) pairs in ascending
/// order, then the values back to back.
pub fn chlo_tag<'a>(msg: &'a [u8], tag: &[u8; 4]) -> Option<&'a [u8]> {
    if !msg.starts_with(b"CHLO") {
        return None;
    }
    let n = usize::from(u16::from_le_bytes([*msg.get(4)?, *msg.get(5)?]));
    let values = 8usize.checked_add(n.checked_mul(8)?)?;
    let mut prev = 0usize;
    for i in 0..n {
        let e = msg.get(8 + 8 * i..16 + 8 * i)?;
        let end = u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as usize;
        if end < prev {
            return None;
        }
        if &e[..4] == tag {
            return msg.get(values.checked_add(prev)?..values.checked_add(end)?);
        }
        prev = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const RFC_DCID: &str = "8394c8f03e515708";

    #[test]
    fn rfc9001_appendix_a1_client_keys() {
        let (key, iv, hpk) = client_initial_secrets(Version::V1, &hex(RFC_DCID)).unwrap();
        assert_eq!(key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hpk.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn rfc9369_appendix_a1_client_keys() {
        let (key, iv, hpk) = client_initial_secrets(Version::V2, &hex(RFC_DCID)).unwrap();
        assert_eq!(key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(hpk.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    /// The protected headers and samples of RFC 9001 A.2 and RFC 9369 A.2: the mask turns
    /// them back into the unprotected headers (first byte 0xc3 / 0xd3, packet number 2).
    #[test]
    fn appendix_a2_header_protection() {
        for (v, protected, sample, first) in [
            (
                Version::V1,
                "c000000001088394c8f03e5157080000449e7b9aec34",
                "d1b1c98dd7689fb8ec11d242b123dc9b",
                0xc3,
            ),
            (
                Version::V2,
                "d76b3343cf088394c8f03e5157080000449ea0c95e82",
                "ffe67b6abcdb4298b485dd04de806071",
                0xd3,
            ),
        ] {
            let keys = InitialKeys::client(v, &hex(RFC_DCID)).unwrap();
            let mask = keys.mask(&hex(sample)).unwrap();
            let h = hex(protected);
            assert_eq!(h[0] ^ (mask[0] & 0x0f), first, "{v:?}");
            let pn: Vec<u8> = (0..4).map(|i| h[18 + i] ^ mask[1 + i]).collect();
            assert_eq!(pn, [0, 0, 0, 2], "{v:?}");
        }
        let keys = InitialKeys::client(Version::V1, &hex(RFC_DCID)).unwrap();
        assert_eq!(
            keys.mask(&hex("d1b1c98dd7689fb8ec11d242b123dc9b"))
                .unwrap()
                .to_vec(),
            hex("437b9aec36")
        );
    }

    #[test]
    fn varints_of_rfc9000_appendix_a1() {
        assert_eq!(
            varint(&hex("c2197c5eff14e88c")),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(varint(&hex("9d7f3e7d")), Some((494_878_333, 4)));
        assert_eq!(varint(&hex("7bbd")), Some((15_293, 2)));
        assert_eq!(varint(&hex("25")), Some((37, 1)));
        assert_eq!(varint(&hex("4025")), Some((37, 2)));
        assert_eq!(varint(&hex("9d7f3e")), None);
    }

    fn crypto_payload(data: &[u8], offset: u64) -> Vec<u8> {
        let mut p = vec![0x06];
        assert!(offset < 0x4000);
        p.extend_from_slice(&(0x4000u16 | offset as u16).to_be_bytes());
        p.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
        p.extend_from_slice(data);
        p.resize(1162, 0);
        p
    }

    #[test]
    fn sealed_initials_open_for_every_version_and_only_with_their_keys() {
        let dcid = hex(RFC_DCID);
        for v in [
            Version::V1,
            Version::V2,
            Version::Draft(27),
            Version::Draft(29),
            Version::Draft(34),
            Version::Mvfst(0xface_b002),
            Version::Q050,
            Version::T050,
            Version::T051,
        ] {
            let keys = InitialKeys::client(v, &dcid).unwrap();
            let payload = crypto_payload(b"hello", 0);
            let pkt = keys.seal(v, &dcid, 2, &payload);
            let view = InitialPacket::new_checked(&pkt).unwrap();
            assert_eq!(view.version(), v);
            assert_eq!(view.dcid(), &dcid[..]);
            let mut scratch = vec![0u8; 2048];
            let (plain, pn) = keys.open(&view, &mut scratch).unwrap();
            assert_eq!((plain, pn), (&payload[..], 2), "{v:?}");
            if v.is_google() {
                continue;
            }
            let frames: Vec<_> = Frames::new(plain, v).collect();
            assert_eq!(
                frames,
                [
                    Ok(Frame::Crypto {
                        offset: 0,
                        data: b"hello"
                    }),
                    Ok(Frame::Padding)
                ]
            );
            // Another salt's keys fail authentication.
            let other_v = if v.salt() == Version::Draft(23).salt() {
                Version::V1
            } else {
                Version::Draft(23)
            };
            let other = InitialKeys::client(other_v, &dcid).unwrap();
            assert_eq!(other.open(&view, &mut scratch), Err(QuicError::Decrypt));
            // Every cut is an error, never a panic.
            for cut in 0..pkt.len() {
                if let Ok(view) = InitialPacket::new_checked(&pkt[..cut]) {
                    let _ = keys.open(&view, &mut scratch);
                }
            }
        }
    }

    #[test]
    fn the_long_header_type_bits_follow_the_version() {
        let dcid = hex(RFC_DCID);
        let keys = InitialKeys::client(Version::V1, &dcid).unwrap();
        let mut pkt = keys.seal(Version::V1, &dcid, 0, &crypto_payload(b"x", 0));
        // A v1 Initial relabelled as v2 has v2's 0-RTT type bits: not an Initial.
        pkt[1..5].copy_from_slice(&0x6b33_43cfu32.to_be_bytes());
        assert_eq!(
            InitialPacket::new_checked(&pkt).err(),
            Some(QuicError::NotInitial)
        );
    }

    #[test]
    fn chlo_tags() {
        // Two tags: SNI = "a.example", VER = "Q043".
        let mut m = b"CHLO".to_vec();
        m.extend_from_slice(&2u16.to_le_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(b"SNI\0");
        m.extend_from_slice(&9u32.to_le_bytes());
        m.extend_from_slice(b"VER\0");
        m.extend_from_slice(&13u32.to_le_bytes());
        m.extend_from_slice(b"a.exampleQ043");
        assert_eq!(chlo_tag(&m, b"SNI\0"), Some(&b"a.example"[..]));
        assert_eq!(chlo_tag(&m, b"VER\0"), Some(&b"Q043"[..]));
        assert_eq!(chlo_tag(&m, b"UAID"), None);
        for cut in 0..m.len() {
            let _ = chlo_tag(&m[..cut], b"VER\0");
        }
    }
}

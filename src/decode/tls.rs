//! The server name (SNI) of a TLS ClientHello: from the first bytes of a TCP stream (TLS
//! records), or from a bare handshake message (QUIC's CRYPTO stream).
//!
//! A cut ClientHello is told apart from a malformed one ([`Hello::Incomplete`]), so the
//! caller can wait for more of the stream (`super::reasm`). Every length is checked against
//! the bytes present.

use super::cursor::Cursor;

/// What the start of a ClientHello shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hello<'a> {
    /// The host name of its `server_name` extension.
    Sni(&'a [u8]),
    /// A whole ClientHello without a host name.
    NoSni,
    /// A ClientHello cut before its end (and before any host name): more bytes may tell.
    Incomplete,
    /// Not a ClientHello, or a malformed one.
    NotHello,
}

/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;

/// Reads the handshake message at the start of `hs` (type, 24-bit length, body), as TLS
/// records carry it once joined, and as QUIC's CRYPTO stream carries it bare.
pub fn handshake_hello(hs: &[u8]) -> Hello<'_> {
    let Some((&ty, rest)) = hs.split_first() else {
        return Hello::Incomplete;
    };
    if ty != CLIENT_HELLO {
        return Hello::NotHello;
    }
    let Some(l) = rest.get(..3) else {
        return Hello::Incomplete;
    };
    let declared = (usize::from(l[0]) << 16) | (usize::from(l[1]) << 8) | usize::from(l[2]);
    let avail = &hs[4..];
    let whole = avail.len() >= declared;
    let body = &avail[..declared.min(avail.len())];
    match hello_body_sni(body, whole) {
        Some(Some(name)) => Hello::Sni(name),
        Some(None) => Hello::NoSni,
        // Running out of bytes is only malformed when the message is all there.
        None if whole => Hello::NotHello,
        None => Hello::Incomplete,
    }
}

/// The host name of a ClientHello body (`whole` when it is all there): `Some(None)` when the
/// extensions were all read without one, `None` when a length runs past the bytes.
fn hello_body_sni(body: &[u8], whole: bool) -> Option<Option<&[u8]>> {
    let mut c = Cursor::new(body);
    // client_version, random, session_id, cipher_suites, compression_methods.
    c.take(2 + 32)?;
    let sid = usize::from(c.u8()?);
    c.take(sid)?;
    let suites = usize::from(c.u16()?);
    c.take(suites)?;
    let comp = usize::from(c.u8()?);
    c.take(comp)?;
    if c.pos == body.len() {
        // No extensions at all (allowed before TLS 1.3), or not yet seen.
        return whole.then_some(None);
    }
    let ext_len = usize::from(c.u16()?);
    let ext_end = c.pos + ext_len;
    while c.pos + 4 <= ext_end {
        let ty = c.u16()?;
        let len = usize::from(c.u16()?);
        let ext = c.take(len)?;
        if ty != 0 {
            continue;
        }
        let mut e = Cursor::new(ext);
        let list_len = usize::from(e.u16()?);
        let list_end = (e.pos + list_len).min(ext.len());
        while e.pos + 3 <= list_end {
            let name_type = e.u8()?;
            let n = usize::from(e.u16()?);
            let name = e.take(n)?;
            if name_type == 0 && !name.is_empty() {
                return Some(Some(name));
            }
        }
        return Some(None);
    }
    if ext_end > body.len() {
        return None;
    }
    Some(None)
}

/// Reads a ClientHello from the start of a TLS client stream (records of type handshake).
/// A message within one record is read in place; one spread over several records has the
/// records' fragments joined into `join` (as much as it holds; pass an empty slice to read
/// the first record only).
pub fn records_hello<'a>(stream: &'a [u8], join: &'a mut [u8]) -> Hello<'a> {
    let mut c = Cursor::new(stream);
    let (Some(ty), Some(major)) = (c.u8(), c.u8()) else {
        return Hello::Incomplete;
    };
    if ty != HANDSHAKE || major != 3 {
        return Hello::NotHello;
    }
    let Some(rec_len) = c.take(1).and_then(|_| c.u16()) else {
        return Hello::Incomplete;
    };
    let rec_len = usize::from(rec_len);
    if rec_len == 0 {
        return Hello::NotHello;
    }
    let first = &stream[5..(5 + rec_len).min(stream.len())];
    let got = handshake_hello(first);
    // In place unless the message continues in the next record.
    if got != Hello::Incomplete || stream.len() < 5 + rec_len || join.is_empty() {
        return got;
    }
    let mut n = 0;
    let mut pos = 0;
    while pos + 5 <= stream.len() && n < join.len() {
        let h = &stream[pos..pos + 5];
        if h[0] != HANDSHAKE || h[1] != 3 {
            return Hello::NotHello;
        }
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        let frag = &stream[pos + 5..(pos + 5 + len).min(stream.len())];
        let k = frag.len().min(join.len() - n);
        join[n..n + k].copy_from_slice(&frag[..k]);
        n += k;
        pos += 5 + len;
    }
    handshake_hello(&join[..n])
}

/// The host name of the `server_name` extension of a ClientHello at the start of `payload`
/// (what one TCP segment shows; see [`records_hello`] for a reassembled stream).
pub fn client_hello_sni(payload: &[u8]) -> Option<&[u8]> {
    match records_hello(payload, &mut []) {
        Hello::Sni(name) => Some(name),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello with one server_name extension (and a dummy one before it).
    pub(crate) fn client_hello(name: &str) -> Vec<u8> {
        let mut sni = Vec::new();
        let n = name.as_bytes();
        sni.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
        sni.extend_from_slice(n);
        let mut exts = Vec::new();
        exts.extend_from_slice(&[0x00, 0x17, 0, 0]); // extended_master_secret, empty
        exts.extend_from_slice(&[0, 0]);
        exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sni);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn finds_the_server_name_and_survives_every_cut() {
        let ch = client_hello("api.example.org");
        assert_eq!(client_hello_sni(&ch), Some(&b"api.example.org"[..]));
        for cut in 0..ch.len() {
            assert_eq!(client_hello_sni(&ch[..cut]), None, "cut at {cut}");
        }
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn cut_hellos_are_incomplete_and_records_are_joined() {
        let ch = client_hello("split.example.org");
        // Every cut before the name is incomplete, never malformed.
        let name_at = ch.len() - "split.example.org".len();
        for cut in 0..name_at {
            assert_eq!(
                records_hello(&ch[..cut], &mut []),
                Hello::Incomplete,
                "{cut}"
            );
        }
        assert_eq!(handshake_hello(&ch[5..]), Hello::Sni(b"split.example.org"));
        // The same message in two records of a few bytes and the rest.
        let hs = &ch[5..];
        let mut two = Vec::new();
        for part in [&hs[..10], &hs[10..]] {
            two.extend_from_slice(&[22, 3, 3]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        let mut join = [0u8; 4096];
        assert_eq!(
            records_hello(&two, &mut join),
            Hello::Sni(b"split.example.org")
        );
        assert_eq!(records_hello(&two, &mut []), Hello::Incomplete);
        assert_eq!(records_hello(&two[..20], &mut join), Hello::Incomplete);
        assert_eq!(
            records_hello(b"\x17\x03\x03\x00\x05hello", &mut join),
            Hello::NotHello
        );
    }
}

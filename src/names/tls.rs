//! The server name (SNI) of a TLS ClientHello, read from the first bytes of a TCP stream.
//!
//! Only what the first segment holds is read: a ClientHello split over several segments, or
//! one whose extensions lie beyond the captured bytes, gives no name (counted as no evidence,
//! never an error). Every length is checked against the bytes present.

/// A cursor over bytes whose every read is bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
}

/// The host name of the `server_name` extension of a ClientHello at the start of `payload`.
pub fn client_hello_sni(payload: &[u8]) -> Option<&[u8]> {
    let mut c = Cursor { b: payload, pos: 0 };
    // Record header: handshake (22), version 3.x, length.
    if c.u8()? != 22 || c.u8()? != 3 {
        return None;
    }
    c.take(1)?;
    let rec_len = usize::from(c.u16()?);
    let rec_end = c.pos + rec_len;
    // Handshake header: ClientHello (1), 24-bit length.
    if c.u8()? != 1 {
        return None;
    }
    c.take(3)?;
    // client_version, random, session_id, cipher_suites, compression_methods.
    c.take(2 + 32)?;
    let sid = usize::from(c.u8()?);
    c.take(sid)?;
    let suites = usize::from(c.u16()?);
    c.take(suites)?;
    let comp = usize::from(c.u8()?);
    c.take(comp)?;
    let ext_len = usize::from(c.u16()?);
    let ext_end = (c.pos + ext_len).min(rec_end);
    while c.pos + 4 <= ext_end {
        let ty = c.u16()?;
        let len = usize::from(c.u16()?);
        let body = c.take(len)?;
        if ty != 0 {
            continue;
        }
        let mut e = Cursor { b: body, pos: 0 };
        let list_len = usize::from(e.u16()?);
        let list_end = (e.pos + list_len).min(body.len());
        while e.pos + 3 <= list_end {
            let name_type = e.u8()?;
            let n = usize::from(e.u16()?);
            let name = e.take(n)?;
            if name_type == 0 && !name.is_empty() {
                return Some(name);
            }
        }
        return None;
    }
    None
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
}

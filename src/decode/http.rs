//! The `Host` header of an HTTP/1.x request, read from the first bytes of a TCP stream.

/// Request methods that start a request line.
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// The host in the `Host` header of the request at the start of `payload`, without its port.
/// `None` when the payload is not a request, the header is absent from the captured bytes, or
/// the host is an address literal (which names nothing).
pub fn request_host(payload: &[u8]) -> Option<&[u8]> {
    if !METHODS.iter().any(|m| payload.starts_with(m)) {
        return None;
    }
    let line_end = find(payload, b"\r\n")?;
    if !payload[..line_end].ends_with(b" HTTP/1.1") && !payload[..line_end].ends_with(b" HTTP/1.0")
    {
        return None;
    }
    let mut pos = line_end + 2;
    while pos < payload.len() {
        let rest = &payload[pos..];
        let end = find(rest, b"\r\n")?;
        let line = &rest[..end];
        if line.is_empty() {
            return None;
        }
        if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"host:") {
            let v = trim(&line[5..]);
            let host = strip_port(v);
            if host.is_empty() || is_literal(host) {
                return None;
            }
            return Some(host);
        }
        pos += end + 2;
    }
    None
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(s, |e| e + 1);
    &v[s..e.max(s)]
}

fn strip_port(v: &[u8]) -> &[u8] {
    if v.first() == Some(&b'[') {
        // An IPv6 literal, `[::1]:8080`: a literal anyway.
        return v;
    }
    match v.iter().rposition(|&c| c == b':') {
        Some(i) if v[i + 1..].iter().all(u8::is_ascii_digit) => &v[..i],
        _ => v,
    }
}

fn is_literal(h: &[u8]) -> bool {
    h.first() == Some(&b'[')
        || std::str::from_utf8(h)
            .ok()
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_without_port() {
        let req = b"GET /x HTTP/1.1\r\nUser-Agent: t\r\nhOsT:  www.Example.org:8080 \r\n\r\n";
        assert_eq!(request_host(req), Some(&b"www.Example.org"[..]));
        assert_eq!(
            request_host(b"POST / HTTP/1.0\r\nHost: a.example\r\n\r\n"),
            Some(&b"a.example"[..])
        );
    }

    #[test]
    fn no_host_from_literals_responses_or_cut_headers() {
        assert_eq!(
            request_host(b"GET / HTTP/1.1\r\nHost: 198.18.0.1\r\n\r\n"),
            None
        );
        assert_eq!(
            request_host(b"GET / HTTP/1.1\r\nHost: [fd00::1]:80\r\n\r\n"),
            None
        );
        assert_eq!(request_host(b"HTTP/1.1 200 OK\r\nHost: a\r\n\r\n"), None);
        assert_eq!(request_host(b"GET / HTTP/1.1\r\nHost: a.exam"), None);
        assert_eq!(request_host(b"GET / HTTP/1.1\r\n\r\nHost: a\r\n"), None);
    }
}

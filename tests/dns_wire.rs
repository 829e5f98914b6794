//! The DNS wire view (`nameflow::decode::dns`), the one parser service detection, name
//! evidence and dns.log share, on messages the synthetic trace builder writes.

use nameflow::decode::dns::{
    reverse_addr, rtype, tcp_message, tcp_messages, DnsError, Message, NameLen,
};
use nameflow::names::Name;
use nameflow::synth::{dns_message, ptr_name, DnsData, DnsRecord, DnsSpec};
use std::net::IpAddr;

#[test]
fn reads_a_synthetic_answer_with_compression() {
    let spec = DnsSpec::query("www.example.org", rtype::A)
        .answer(DnsRecord::new(
            "www.example.org",
            60,
            DnsData::Cname("edge.cdn.example.net".into()),
        ))
        .answer(DnsRecord::new(
            "edge.cdn.example.net",
            30,
            DnsData::A("198.18.0.7".parse().unwrap()),
        ));
    let bytes = dns_message(&spec, true);
    let m = Message::new_checked(&bytes[..]).unwrap();
    assert!(m.is_response());
    let p = m.parse().unwrap();
    assert_eq!(p.end, bytes.len());
    assert_eq!(p.questions().len(), 1);
    let mut n = Name::default();
    m.read_name(p.questions()[0].name_off, &mut n).unwrap();
    assert_eq!(n.as_bytes(), b"www.example.org");
    let recs = p.records();
    assert_eq!(recs.len(), 2);
    m.rdata_name(&recs[0], &mut n).unwrap();
    assert_eq!(n.as_bytes(), b"edge.cdn.example.net");
    assert_eq!(m.rdata_addr(&recs[1]), Some("198.18.0.7".parse().unwrap()));
}

#[test]
fn pointers_must_point_backwards() {
    // Header, then a name that is a pointer to itself at offset 12.
    let mut b = vec![0u8; 12];
    b[5] = 1; // qdcount = 1
    b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let m = Message::new_checked(&b[..]).unwrap();
    let mut n = Name::default();
    assert_eq!(m.read_name(12, &mut n), Err(DnsError::BadName));
    // A forward pointer is refused too.
    let mut b = vec![0u8; 12];
    b.extend_from_slice(&[0xc0, 16, 0, 0, 1, b'a', 0]);
    let m = Message::new_checked(&b[..]).unwrap();
    assert_eq!(m.read_name(12, &mut n), Err(DnsError::BadName));
    // Two pointers that point at each other cannot loop: the second is not backwards
    // of the limit set by the first.
    let mut b = vec![0u8; 12];
    b.extend_from_slice(&[0xc0, 14, 0xc0, 12]);
    let m = Message::new_checked(&b[..]).unwrap();
    assert_eq!(m.read_name(14, &mut n), Err(DnsError::BadName));
}

#[test]
fn truncated_messages_are_errors_not_panics() {
    let spec = DnsSpec::query("a.example", rtype::A).answer(DnsRecord::new(
        "a.example",
        5,
        DnsData::A("198.18.0.1".parse().unwrap()),
    ));
    let bytes = dns_message(&spec, true);
    for cut in 0..bytes.len() {
        if let Ok(m) = Message::new_checked(&bytes[..cut]) {
            assert!(m.parse().is_err(), "cut at {cut}");
        }
    }
}

#[test]
fn reverse_names_give_addresses() {
    for a in ["198.18.3.4", "fd00::1:2", "2001:db8::ff00:42:8329"] {
        let addr: IpAddr = a.parse().unwrap();
        assert_eq!(reverse_addr(ptr_name(addr).as_bytes()), Some(addr), "{a}");
    }
    assert_eq!(reverse_addr(b"1.2.3.in-addr.arpa"), None);
    assert_eq!(reverse_addr(b"300.2.3.4.in-addr.arpa"), None);
    assert_eq!(reverse_addr(b"example.com"), None);
}

#[test]
fn tcp_framing() {
    let bytes = dns_message(&DnsSpec::query("a.example", rtype::A), true);
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    assert_eq!(tcp_message(&framed), Some(&bytes[..]));
    assert_eq!(tcp_message(&framed[..framed.len() - 1]), None);
}

#[test]
fn a_tcp_segment_is_read_only_when_it_holds_whole_messages() {
    let a = dns_message(&DnsSpec::query("a.example", rtype::A), true);
    let b = dns_message(&DnsSpec::query("b.example", rtype::AAAA), false);
    let mut seg = Vec::new();
    for m in [&a, &b] {
        seg.extend_from_slice(&(m.len() as u16).to_be_bytes());
        seg.extend_from_slice(m);
    }
    let got: Vec<&[u8]> = tcp_messages(&seg).unwrap().collect();
    assert_eq!(got, vec![&a[..], &b[..]]);
    assert!(
        tcp_messages(&seg[..seg.len() - 1]).is_none(),
        "a cut message"
    );
    assert!(tcp_messages(&seg[3..]).is_none(), "a continuation");
    assert!(
        tcp_messages(&[0, 4, 1, 2, 3, 4]).is_none(),
        "shorter than a header"
    );
    assert_eq!(tcp_messages(&[]).unwrap().count(), 0);
}

#[test]
fn a_name_can_be_measured_without_a_buffer() {
    let bytes = dns_message(&DnsSpec::query("www.example.org", rtype::A), false);
    let m = Message::new_checked(&bytes[..]).unwrap();
    let mut len = NameLen::default();
    let end = m.read_name(12, &mut len).unwrap();
    assert_eq!((len.0, end), ("www.example.org".len(), 12 + 17));
}

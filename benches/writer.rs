//! The writer's throughput in records per second, JSON and TSV: the encoders alone, and the
//! whole writer thread (SPSC queue → encode → sink) into the null sink and into a file.
//!
//! `cargo bench --bench writer`; criterion prints the throughput (elements/s = records/s).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nameflow::output::{
    Clock, Encoding, Format, JsonTs, OutputConfig, SinkConfig, SinkSpec, Writer,
};
use nameflow::types::record::{
    CommunityId, ConnRecord, ConnState, History, Service, ServiceList, Transport, Uid,
};
use nameflow::types::spsc;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A realistic mix: IPv4 and IPv6, TCP with history and service, UDP with none, tunnels.
fn records(n: usize) -> Vec<ConnRecord> {
    (0..n)
        .map(|i| {
            let i64 = i as u64;
            let mut history = History::default();
            let mut service = ServiceList::default();
            let (proto, ip_proto) = if i % 4 == 3 {
                (Transport::Udp, 17)
            } else {
                for &c in b"ShADadFf" {
                    history.push(c);
                }
                service.push(if i % 2 == 0 {
                    Service::Ssl
                } else {
                    Service::Http
                });
                (Transport::Tcp, 6)
            };
            let (orig_h, resp_h): (IpAddr, IpAddr) = if i % 5 == 0 {
                (
                    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i as u16).into(),
                    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 2, 1).into(),
                )
            } else {
                (
                    Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8).into(),
                    Ipv4Addr::new(198, 19, 0, 1).into(),
                )
            };
            ConnRecord {
                ts_ns: 1_700_000_000_000_000_000 + i64 * 1_234_567,
                uid: Uid::from_bits(i64.wrapping_mul(0x9e37_79b9_7f4a_7c15), i as u32),
                orig_h,
                orig_p: 10_000 + (i % 50_000) as u16,
                resp_h,
                resp_p: 443,
                vlans: nameflow::flow::key::Vlans::NONE,
                proto,
                service,
                duration_ns: 1_000_000 + i64 * 997,
                orig_bytes: 500 + i64,
                resp_bytes: 20_000 + i64,
                conn_state: ConnState::SF,
                local_orig: Some(true),
                local_resp: Some(i % 3 == 0),
                missed_bytes: 0,
                history,
                orig_pkts: 12,
                orig_ip_bytes: 1_200,
                resp_pkts: 20,
                resp_ip_bytes: 21_000,
                tunnel_parents: if i % 10 == 0 {
                    [Some(Uid::from_bits(7, 7)), None]
                } else {
                    [None, None]
                },
                ip_proto,
                community_id: CommunityId::from_digest([0xa5; 20]),
            }
        })
        .collect()
}

fn encoders(c: &mut Criterion) {
    let recs = records(4096);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(recs.len() as u64));
    for (name, format) in [("json", Format::Json), ("tsv", Format::Tsv)] {
        let enc = Encoding {
            format,
            json_ts: JsonTs::Epoch,
            path_key: false,
        };
        let mut buf = Vec::with_capacity(1024);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut bytes = 0;
                for r in &recs {
                    buf.clear();
                    enc.encode(r, &mut buf);
                    bytes += buf.len();
                }
                bytes
            })
        });
    }
    g.finish();
}

/// The writer thread end to end: one producer pushes `N` records into an SPSC queue (waiting
/// when full, as offline workers do); the writer drains, encodes and writes.
fn writer_thread(c: &mut Criterion) {
    const N: usize = 200_000;
    let recs = records(N);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group("writer");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    for (fname, format) in [("json", Format::Json), ("tsv", Format::Tsv)] {
        for (sname, spec) in [
            ("null", SinkSpec::Null),
            ("file", SinkSpec::Dir(dir.path().join(fname))),
        ] {
            let cfg = OutputConfig {
                sinks: vec![SinkConfig {
                    spec: spec.clone(),
                    format,
                }],
                ..OutputConfig::default()
            };
            g.bench_function(format!("{fname}/{sname}"), |b| {
                b.iter_batched(
                    || {
                        let (tx, rx) = spsc::channel::<ConnRecord>(4096);
                        let mut w = Writer::open(&cfg, Clock::Wall).expect("open the sink");
                        w.add_log(vec![rx]).expect("add conn.log");
                        (tx, w)
                    },
                    |(tx, w)| {
                        let t = std::thread::spawn(move || w.run());
                        for r in &recs {
                            tx.push_wait(*r);
                        }
                        drop(tx);
                        let report = t.join().expect("writer thread").expect("writer");
                        assert_eq!(report.records, N as u64);
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, encoders, writer_thread);
criterion_main!(benches);

//! Offline throughput of one worker: decode + dispatch + flow shard, on a capture loaded into
//! memory, so neither the disk nor the pcap parser is measured. This is the per-worker
//! baseline the bench issue compares live capture against.
//!
//! The traces are the shared Zeek/nDPI/Suricata captures of 1 MB or more when `../shared` is
//! present, and always a synthetic DNS + TCP mix built with `nameflow::synth`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nameflow::capture::pcap::PcapReader;
use nameflow::capture::{Frame, FrameSource};
use nameflow::decode::{DecodeConfig, LinkType};
use nameflow::engine::dispatch::{Dispatched, Dispatcher};
use nameflow::engine::worker::{FullPolicy, RecordOut, WorkerNames};
use nameflow::flow::{FlowConfig, Shard};
use nameflow::names::{NameNode, NamesConfig};
use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpSpec, Trace};
use nameflow::types::record::ConnRecord;
use nameflow::types::spsc;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

struct Loaded {
    name: String,
    frames: Vec<(u64, LinkType, Vec<u8>)>,
}

fn shared_traces() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".pcap"))
            {
                out.push(p);
            }
        }
    }
    out
}

fn load(path: &PathBuf) -> Vec<(u64, LinkType, Vec<u8>)> {
    let mut r = PcapReader::open(std::slice::from_ref(path)).expect("open trace");
    let mut frames = Vec::new();
    while let Ok(Some(f)) = r.next_frame() {
        frames.push((f.ts_ns, f.link, f.data.to_vec()));
    }
    frames
}

fn synthetic() -> Loaded {
    let mut t = Trace::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    for i in 0..2000u32 {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)),
            40000 + (i % 20000) as u16,
        );
        let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)), 443);
        let dns = DnsSpec::query("example.test", 1).answer(DnsRecord::new(
            "example.test",
            300,
            DnsData::A(Ipv4Addr::new(198, 19, 0, 1)),
        ));
        ts = t.dns_exchange(&dns, ts) + 1_000_000;
        let spec = TcpSpec {
            client,
            server,
            client_segments: 4,
            server_segments: 8,
            ..TcpSpec::default()
        };
        ts = t.tcp_session(&spec, ts) + 1_000_000;
    }
    Loaded {
        name: "synthetic".into(),
        frames: t
            .frames()
            .iter()
            .map(|f| (f.ts_ns, t.link(), f.data.clone()))
            .collect(),
    }
}

/// The shared captures of at least 1 MB (the largest is an IPv6 fragment flood that is mostly
/// dropped by the reassembler, so real traffic mixes are measured beside it).
fn large_shared() -> Vec<Loaded> {
    let mut out: Vec<(u64, PathBuf)> = shared_traces()
        .into_iter()
        .map(|p| (std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0), p))
        .filter(|(len, _)| *len >= 1 << 20)
        .collect();
    out.sort();
    out.into_iter()
        .rev()
        .map(|(_, p)| Loaded {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            frames: load(&p),
        })
        .collect()
}

/// One worker's offline work over `frames`: decode, dispatch, shard and, with `names`, the
/// name evidence, the replica and the lookups at flow end (as `--no-names` vs the default).
fn run_once(frames: &[(u64, LinkType, Vec<u8>)], names: bool) -> u64 {
    let mut d =
        Dispatcher::new(DecodeConfig::default(), 1, Some(0), 0, 60_000_000_000).with_names(names);
    let mut shard = Shard::new(&FlowConfig::default());
    let (tx, rx) = spsc::channel::<ConnRecord>(1024);
    let mut out = RecordOut::new(tx, FullPolicy::Drop);
    let mut named = WorkerNames::live(NameNode::alone(&NamesConfig::default()), 0);
    for (ts, link, data) in frames {
        let frame = Frame {
            ts_ns: *ts,
            link: *link,
            data,
            wire_len: data.len() as u32,
        };
        let _ = d.dispatch(&frame, |x| match x {
            Dispatched::Packet(_, s) if names => {
                shard.process(&s, &mut |r| named.emit(r, &mut out))
            }
            Dispatched::Packet(_, s) => shard.process(&s, &mut |r| out.emit(r)),
            Dispatched::Expect(e) => shard.expect(e),
            Dispatched::Name(_, ev) => named.node.on_evidence(&ev),
            Dispatched::Dns(..) => {}
        });
        // The queue stands in for the writer: empty it so nothing is dropped.
        while rx.pop().is_some() {}
    }
    if names {
        shard.flush(&mut |r| named.emit(r, &mut out));
    } else {
        shard.flush(&mut |r| out.emit(r));
    }
    while rx.pop().is_some() {}
    out.records
}

fn bench(c: &mut Criterion) {
    let mut traces = large_shared();
    traces.push(synthetic());
    for trace in traces {
        let mut g = c.benchmark_group("worker_offline");
        g.throughput(Throughput::Elements(trace.frames.len() as u64));
        g.sample_size(10);
        g.bench_function(format!("{}/names", trace.name), |b| {
            b.iter(|| run_once(&trace.frames, true))
        });
        g.bench_function(format!("{}/no-names", trace.name), |b| {
            b.iter(|| run_once(&trace.frames, false))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Context lookups with 100,000 inventory records loaded.
//!
//! - `context_lookup`: one flow's lookup (both ends, as the worker does when it logs a
//!   record) against an inventory of 100,000 windows: both ends known (addresses drawn from
//!   all 70,000, so nearly every lookup misses the caches, and from 1,000 that stay cached),
//!   one end known (a pod talking to the outside), neither known.
//! - `context_worker`: one worker's offline work (decode, dispatch, shard, record hand-off)
//!   over 20,000 short sessions (10 packets each) whose clients are all in the inventory,
//!   with and without context, to show whether the lookups show in throughput: with 20,000
//!   distinct clients (no lookup finds its address cached: the worst case) and with 500.
//! - `context_reload`: what a reload costs the reload thread: parsing a 100,000-pod kubectl
//!   list and building the inventory (off the packet path, shown for sizing).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nameflow::capture::Frame;
use nameflow::context::reload::parse_file;
use nameflow::context::{col, ConnContext, Context, Inventory, Rank, Values, Window};
use nameflow::decode::{DecodeConfig, LinkType};
use nameflow::engine::dispatch::{Dispatched, Dispatcher};
use nameflow::engine::worker::{FullPolicy, RecordOut};
use nameflow::flow::{FlowConfig, Shard};
use nameflow::synth::{TcpSpec, Trace};
use nameflow::types::record::ConnRecord;
use nameflow::types::spsc;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

const RECORDS: u32 = 100_000;
const T0: u64 = 1_714_554_000_000_000_000;
const S: u64 = 1_000_000_000;

/// Address `i` of the inventory: 198.18.0.0/15 holds 131,072 addresses.
fn inv_addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i))
}

/// 100,000 windows as a cluster with churn would give: 70,000 addresses, 20,000 of which
/// had a second pod after the first ended (windows `[T0-2h, T0-1h)` and `[T0-1h, open)`),
/// and 10,000 instance windows on addresses that also have pods (merged on lookup).
fn windows() -> Vec<Window> {
    let mut out = Vec::with_capacity(RECORDS as usize);
    let pod = |i: u32, gen: u32, from: u64, to: u64| {
        let mut v: Values = Default::default();
        v[col::POD] = Some(format!("svc{}-7d4b9c6f5-{:05}g{gen}", i % 500, i).into());
        v[col::POD_NAMESPACE] = Some(format!("team-{}", i % 40).into());
        v[col::POD_NODE] =
            Some(format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i % 200, i % 250).into());
        v[7] = Some(format!("app-{}", i % 500).into());
        Window {
            ip: inv_addr(i),
            from_ns: from,
            to_ns: to,
            rank: Rank::Pod,
            values: v,
        }
    };
    for i in 0..70_000 {
        if i < 20_000 {
            out.push(pod(i, 0, T0 - 7200 * S, T0 - 3600 * S));
            out.push(pod(i, 1, T0 - 3600 * S, u64::MAX));
        } else {
            out.push(pod(i, 0, T0 - 7200 * S, u64::MAX));
        }
    }
    for i in 0..10_000 {
        let mut v: Values = Default::default();
        v[col::INSTANCE] = Some(format!("i-0{:016x}", i).into());
        v[col::INSTANCE_NAME] = Some(format!("k8s-worker-{i}").into());
        v[col::VPC] = Some("vpc-0fedcba9876543210".into());
        out.push(Window {
            ip: inv_addr(i * 7),
            from_ns: 0,
            to_ns: u64::MAX,
            rank: Rank::Instance,
            values: v,
        });
    }
    assert_eq!(out.len(), RECORDS as usize);
    out
}

fn lookup(c: &mut Criterion) {
    let inv = Inventory::build(windows(), 2_000_000);
    assert_eq!(inv.len(), RECORDS as usize);
    let ctx = Context::fixed(inv);
    let mut reader = ctx.reader();
    // Flows over addresses spread through the inventory (a pseudo-random walk, so the
    // hash table is not read in order), at an instant inside the second generation.
    const FLOWS: usize = 4096;
    let mut x = 0x9e37_79b9u32;
    let mut pick = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x % 70_000
    };
    let known: Vec<(IpAddr, IpAddr)> = (0..FLOWS)
        .map(|_| (inv_addr(pick()), inv_addr(pick())))
        .collect();
    let outside = |i: usize| IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 250) as u8));
    let half: Vec<(IpAddr, IpAddr)> = known
        .iter()
        .enumerate()
        .map(|(i, (a, _))| (*a, outside(i)))
        .collect();
    let none: Vec<(IpAddr, IpAddr)> = (0..FLOWS)
        .map(|i| {
            (
                outside(i),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250) as u8)),
            )
        })
        .collect();
    // The same, over 1,000 addresses: a sensor's active pods at one time, which stay cached.
    let hot: Vec<(IpAddr, IpAddr)> = (0..FLOWS)
        .map(|_| (inv_addr(pick() % 1000 * 70), inv_addr(pick() % 1000 * 70)))
        .collect();
    let t = T0 - 600 * S;
    let mut g = c.benchmark_group("context_lookup");
    g.throughput(Throughput::Elements(FLOWS as u64));
    for (name, flows) in [
        ("both_ends_known", &known),
        ("both_ends_known_1k_hot", &hot),
        ("one_end_known", &half),
        ("unknown", &none),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut set = 0usize;
                for &(o, r) in flows.iter() {
                    // Each record starts with an empty context, as the shard makes it.
                    let mut c = ConnContext::default();
                    reader.enrich(&mut c, o, r, t);
                    set += usize::from(!c.orig.is_empty()) + usize::from(!c.resp.is_empty());
                }
                set
            })
        });
    }
    g.finish();
}

/// 20,000 short TCP sessions to one server from `clients` distinct clients, all in the
/// inventory (20,000: every record looks up an address no other record used; 500: a
/// cluster's busy pods, whose inventory blocks stay cached).
fn trace(clients: u32) -> Vec<(u64, LinkType, Vec<u8>)> {
    let mut t = Trace::new();
    let mut ts = T0 - 600 * S;
    for i in 0..20_000u32 {
        let spec = TcpSpec {
            client: SocketAddr::new(
                inv_addr((i % clients) * 3 % 70_000),
                40000 + (i % 20000) as u16,
            ),
            server: SocketAddr::new(inv_addr(69_999), 443),
            client_segments: 1,
            server_segments: 2,
            ..TcpSpec::default()
        };
        ts = t.tcp_session(&spec, ts) + 100_000;
    }
    t.frames()
        .iter()
        .map(|f| (f.ts_ns, t.link(), f.data.clone()))
        .collect()
}

/// One worker's offline work over `frames`, with context lookups when `ctx` is given.
fn run_once(frames: &[(u64, LinkType, Vec<u8>)], ctx: Option<&Context>) -> u64 {
    let mut d = Dispatcher::new(DecodeConfig::default(), 1, Some(0), 0, 60_000_000_000);
    let mut shard = Shard::new(&FlowConfig::default());
    // Emptied after every frame: a small queue keeps its setup out of the measurement.
    let (tx, rx) = spsc::channel::<ConnRecord>(1024);
    let mut out = RecordOut::new(tx, FullPolicy::Drop).with_context(ctx.map(Context::reader));
    for (n, (ts, link, data)) in frames.iter().enumerate() {
        if n % 256 == 0 {
            // The worker loop's per-batch check.
            out.refresh_context();
        }
        let frame = Frame {
            ts_ns: *ts,
            link: *link,
            data,
            wire_len: data.len() as u32,
        };
        let _ = d.dispatch(&frame, |x| match x {
            Dispatched::Packet(_, s) => shard.process(&s, &mut |r| out.emit(r)),
            Dispatched::Expect(e) => shard.expect(e),
            // Names are off here: their evidence is not the subject of this bench.
            _ => {}
        });
        while rx.pop().is_some() {}
    }
    shard.flush(&mut |r| out.emit(r));
    while rx.pop().is_some() {}
    let k = out.context_counters();
    assert!(ctx.is_none() || k.matched * 2 >= k.lookups, "{k:?}");
    out.records
}

fn worker(c: &mut Criterion) {
    let ctx = Context::fixed(Inventory::build(windows(), 2_000_000));
    for clients in [20_000u32, 500] {
        let frames = trace(clients);
        let mut g = c.benchmark_group(format!("context_worker/{clients}_clients"));
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.sample_size(20);
        g.bench_function("no_context", |b| b.iter(|| run_once(&frames, None)));
        g.bench_function("context_100k", |b| b.iter(|| run_once(&frames, Some(&ctx))));
        g.finish();
    }
}

/// A kubectl pod list of `n` running pods.
fn kubectl_pods(n: u32) -> String {
    let mut s = String::from("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n");
    for i in 0..n {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"svc{a}-7d4b9c6f5-{i:05}","namespace":"team-{ns}","uid":"00000000-0000-4000-8000-{i:012}","labels":{{"app":"svc{a}","pod-template-hash":"7d4b9c6f5"}},"creationTimestamp":"2024-05-01T08:00:00Z"}},"spec":{{"containers":[{{"name":"main","image":"registry.example/svc{a}:1.0"}}],"nodeName":"ip-10-0-{n1}-{n2}.eu-west-1.compute.internal"}},"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"startTime":"2024-05-01T08:00:01Z","hostIP":"10.0.{n1}.{n2}"}}}}"#,
            a = i % 500,
            ns = i % 40,
            n1 = i % 200,
            n2 = i % 250,
            ip = inv_addr(i),
        ));
    }
    s.push_str("\n],\"metadata\":{\"resourceVersion\":\"\"}}\n");
    s
}

fn reload(c: &mut Criterion) {
    let text = kubectl_pods(RECORDS);
    let mut g = c.benchmark_group("context_reload");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(RECORDS)));
    g.bench_function("parse_kubectl_100k_pods", |b| {
        b.iter(|| parse_file(Path::new("pods.json"), &text, T0, &["label:app".into()]).unwrap())
    });
    g.bench_function("build_100k_windows", |b| {
        b.iter_batched(
            windows,
            |w| Inventory::build(w, 2_000_000),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, lookup, worker, reload);
criterion_main!(benches);

//! Microbenchmarks of the per-packet pieces, each alone: decoding a frame, one flow-table
//! update, a name-cache insert and lookup, and forwarding a packet summary over the SPSC
//! queue (within one thread, and from one core to another). Record encoding is in
//! `benches/writer.rs`, the whole per-worker pipeline in `benches/pipeline.rs`.
//!
//! Inputs are built with `nameflow::synth` in the benchmarking ranges; throughput is per
//! element (frame, summary, mapping), so criterion prints elements per second.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nameflow::capture::Frame;
use nameflow::decode::{DecodeConfig, Decoder, LinkType};
use nameflow::engine::dispatch::{Dispatched, Dispatcher};
use nameflow::flow::summary::PacketSummary;
use nameflow::flow::{FlowConfig, Shard};
use nameflow::names::{Evidence, NameSource, NamesConfig, Replica};
use nameflow::synth::{DnsData, DnsRecord, DnsSpec, TcpSpec, Trace};
use nameflow::types::spsc;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// 2,000 short TCP connections, each after the DNS exchange that named its server, plus
/// 64-byte UDP datagrams over 1,024 flows: the frame mix of the live bench's templates.
fn frames() -> Vec<Vec<u8>> {
    let mut t = Trace::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    for i in 0..2000u32 {
        let client = IpAddr::V4(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8));
        let server = Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8);
        let name = format!("s{i}.micro.test");
        let mut q = DnsSpec::query(&name, 1).answer(DnsRecord::new(&name, 300, DnsData::A(server)));
        q.client = SocketAddr::new(client, 40_000);
        ts = t.dns_exchange(&q, ts) + 1_000_000;
        let spec = TcpSpec {
            client: SocketAddr::new(client, 50_000 + (i % 10_000) as u16),
            server: SocketAddr::new(server.into(), 443),
            ..TcpSpec::default()
        };
        ts = t.tcp_session(&spec, ts) + 1_000_000;
    }
    for i in 0..1024u32 {
        let c = SocketAddr::new(
            Ipv4Addr::new(198, 18, 4 + (i >> 8) as u8, i as u8).into(),
            10_000,
        );
        let s = SocketAddr::new(Ipv4Addr::new(198, 19, 200, 1).into(), 5_000);
        t.udp(ts, c, s, &[0x5a; 18]);
        ts += 1_000;
    }
    t.frames().iter().map(|f| f.data.clone()).collect()
}

/// The summaries the dispatcher makes of `frames`, with their timestamps.
fn summaries(frames: &[Vec<u8>]) -> Vec<PacketSummary> {
    let mut d = Dispatcher::new(DecodeConfig::default(), 1, Some(0), 0, 60_000_000_000);
    let mut out = Vec::with_capacity(frames.len());
    for (i, data) in frames.iter().enumerate() {
        let frame = Frame {
            ts_ns: 1_700_000_000_000_000_000 + i as u64 * 1_000,
            link: LinkType::ETHERNET,
            data,
            wire_len: data.len() as u32,
        };
        let _ = d.dispatch(&frame, |x| {
            if let Dispatched::Packet(_, s) = x {
                out.push(s);
            }
        });
    }
    out
}

fn decode(c: &mut Criterion) {
    let frames = frames();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("frame_mix", |b| {
        let mut dec = Decoder::new(DecodeConfig::default());
        b.iter(|| {
            let mut n = 0u64;
            for f in &frames {
                let _ = dec.decode(LinkType::ETHERNET, 1, f, |p| {
                    black_box(p);
                    n += 1;
                });
            }
            n
        })
    });
    g.finish();
}

fn flow_update(c: &mut Criterion) {
    let sums = summaries(&frames());
    let mut g = c.benchmark_group("flow_update");
    g.throughput(Throughput::Elements(sums.len() as u64));
    g.bench_function("shard_process", |b| {
        b.iter_batched(
            || Shard::new(&FlowConfig::default()),
            |mut shard| {
                let mut records = 0u64;
                for s in &sums {
                    shard.process(s, &mut |r| {
                        black_box(r);
                        records += 1;
                    });
                }
                records
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Summaries of 64-byte UDP datagrams over `flows` flows, one datagram per flow per round,
/// round after round, each round in a different order: the live bench's `udp64` template at
/// its 65,536-flow variant, where the flow table no longer fits the CPU caches, without the
/// template's fixed order (which lets the CPU's stride prefetcher guess the next flow).
fn udp_rounds(flows: u32, rounds: u32) -> Vec<PacketSummary> {
    let mut t = Trace::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut order: Vec<u32> = (0..flows).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..rounds {
        for &i in &order {
            let c = SocketAddr::new(
                Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8).into(),
                10_000 + (i >> 16) as u16,
            );
            let s = SocketAddr::new(Ipv4Addr::new(198, 19, 0, 1).into(), 5_000);
            t.udp(ts, c, s, &[0x5a; 18]);
            ts += 200;
        }
        // Fisher-Yates with a fixed xorshift generator: the same orders every run.
        for k in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(k, (rng % (k as u64 + 1)) as usize);
        }
    }
    let frames: Vec<Vec<u8>> = t.frames().iter().map(|f| f.data.clone()).collect();
    summaries(&frames)
}

fn flow_update_large(c: &mut Criterion) {
    const FLOWS: u32 = 65_536;
    let sums = udp_rounds(FLOWS, 3);
    let (warm, rest) = sums.split_at(FLOWS as usize);
    let mut g = c.benchmark_group("flow_update");
    g.throughput(Throughput::Elements(rest.len() as u64));
    g.bench_function("udp_65536_flows_shuffled", |b| {
        b.iter_batched(
            || {
                // The table already holds every flow: the steady state of a live capture.
                let mut shard = Shard::new(&FlowConfig::default());
                for s in warm {
                    shard.process(s, &mut |r| {
                        black_box(r);
                    });
                }
                shard
            },
            |mut shard| {
                let mut records = 0u64;
                for s in rest {
                    shard.process(s, &mut |r| {
                        black_box(r);
                        records += 1;
                    });
                }
                (records, shard)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn names(c: &mut Criterion) {
    let n = 10_000u32;
    let name = |i: u32| {
        let s = format!("host{i}.micro.test");
        nameflow::names::Name::new(s.as_bytes())
    };
    let evidence: Vec<Evidence> = (0..n)
        .map(|i| Evidence {
            addr: IpAddr::V4(Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8)),
            name: name(i),
            source: NameSource::A,
            ts_ns: 1_000_000_000 + u64::from(i),
            ttl_s: 300,
            client: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, (i % 200) as u8))),
            clk_ns: 1_000_000_000 + u64::from(i),
            own: None,
        })
        .collect();
    let cfg = NamesConfig::default();
    let mut g = c.benchmark_group("names");
    g.throughput(Throughput::Elements(u64::from(n)));
    g.bench_function("insert", |b| {
        b.iter_batched(
            || Replica::new(&cfg),
            |mut r| {
                for e in &evidence {
                    black_box(r.insert(e, false));
                }
                r
            },
            BatchSize::LargeInput,
        )
    });
    let mut full = Replica::new(&cfg);
    for e in &evidence {
        full.insert(e, false);
    }
    g.bench_function("lookup_hit", |b| {
        b.iter(|| {
            let mut hits = 0u64;
            for e in &evidence {
                let client = e.client.expect("set above");
                hits += u64::from(
                    full.lookup(e.addr, client, e.clk_ns + 1, e.ts_ns + 1)
                        .is_some(),
                );
            }
            hits
        })
    });
    g.bench_function("lookup_miss", |b| {
        b.iter(|| {
            let mut hits = 0u64;
            for i in 0..n {
                let addr = IpAddr::V4(Ipv4Addr::new(198, 18, 200, i as u8));
                hits += u64::from(
                    full.lookup(addr, addr, 2_000_000_000, 2_000_000_000)
                        .is_some(),
                );
            }
            hits
        })
    });
    g.finish();
}

fn spsc_forward(c: &mut Criterion) {
    let sums = summaries(&frames());
    let mut g = c.benchmark_group("spsc_forward");
    g.throughput(Throughput::Elements(sums.len() as u64));
    // Push and pop on one thread: the queue's own cost, no cache lines moving.
    g.bench_function("same_thread", |b| {
        let (tx, rx) = spsc::channel::<PacketSummary>(4096);
        b.iter(|| {
            let mut n = 0u64;
            for chunk in sums.chunks(1024) {
                for s in chunk {
                    tx.try_push(*s);
                }
                while let Some(s) = rx.pop() {
                    black_box(s);
                    n += 1;
                }
            }
            n
        })
    });
    // One producer thread, one consumer thread: what forwarding between workers costs.
    g.bench_function("cross_thread", |b| {
        b.iter(|| {
            let (tx, rx) = spsc::channel::<PacketSummary>(16_384);
            let sums = &sums;
            std::thread::scope(|s| {
                s.spawn(move || {
                    for x in sums {
                        let mut v = *x;
                        loop {
                            if tx.try_push(v) {
                                break;
                            }
                            v = *x;
                            std::hint::spin_loop();
                        }
                    }
                });
                let mut n = 0usize;
                while n < sums.len() {
                    match rx.pop() {
                        Some(v) => {
                            black_box(v);
                            n += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
                n
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    decode,
    flow_update,
    flow_update_large,
    names,
    spsc_forward
);
criterion_main!(benches);

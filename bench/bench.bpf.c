// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The bench harness's XDP programs (built by `cargo xtask bench` at run time, loaded by
 * `nameflow-bench`):
 *
 *   gen_tx     the traffic generator. Run with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES on
 *              the sending veth, it turns every repetition into the next frame of a template
 *              list and returns XDP_TX, which transmits the frame to the veth peer.
 *   sink_drop  the ceiling receiver: counts and drops every frame.
 *   sink_pass  counts and passes every frame to the kernel; attached on the receiving veth
 *              for the AF_PACKET reader, because veth only accepts XDP frames from its peer
 *              while an XDP program runs on it (it needs the NAPI instance XDP brings).
 *
 * Pacing happens here, not in user space: a BPF_PROG_RUN call has a fixed cost of tens of
 * milliseconds, so the loader makes few long calls and the program itself decides, from
 * bpf_ktime_get_ns(), whether a repetition sends a frame (XDP_TX) or is skipped (XDP_DROP
 * of an untouched frame, which nothing receives): one frame per `gap_ns`, with at most
 * `burst_ns` of lag made up at once (paced batches), and nothing after `stop_ns`.
 *
 * The generator keeps one sequence number per CPU. Frame i of a CPU is template
 * i % templates; every full pass over the list (a "round") moves the client address of each
 * template by `stride` in its low 16 bits, for `rounds` rounds, so one list of templates
 * gives templates x rounds distinct connections without storing them. The IPv4 header and
 * TCP/UDP checksums are patched incrementally (RFC 1624), so every frame stays valid.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Keep in step with src/bin/nameflow-bench.rs (`Template`, `GenConfig`). */
#define GEN_MAX_FRAME 1536

struct gen_template {
	__u16 len;         /* frame length in bytes */
	__u16 vary_off;    /* offset of the client address' low 16 bits; 0: never varied */
	__u16 ip_csum_off; /* offset of the IPv4 header checksum; 0: none (IPv6) */
	__u16 l4_csum_off; /* offset of the TCP/UDP checksum; 0: none */
	__u8 udp;          /* the L4 checksum is UDP's: a computed 0 is sent as 0xffff */
	__u8 pad[7];
	__u8 data[GEN_MAX_FRAME];
};

struct gen_config {
	__u32 templates; /* entries of `templates` in use */
	__u32 rounds;    /* client address variants; 1: none */
	__u32 stride;    /* added to the client address' low 16 bits per round */
	__u32 pad;
	__u64 gap_ns;    /* time between two frames; 0: unpaced */
	__u64 burst_ns;  /* most lag made up at full speed */
	__u64 stop_ns;   /* CLOCK_MONOTONIC time after which nothing is sent; 0: none */
};

struct gen_counters {
	__u64 seq;     /* frames generated on this CPU (XDP_TX returned) */
	__u64 errors;  /* repetitions that could not build a frame (XDP_ABORTED) */
	__u64 next_ns; /* when the next frame is due */
	__u64 first_ns; /* when the first frame was sent */
	__u64 last_ns;  /* when the last frame was sent */
};

struct sink_counters {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* resized by the loader to the template count */
	__type(key, __u32);
	__type(value, struct gen_template);
} templates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_counters);
} gen_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_counters);
} sink_counters SEC(".maps");

/* The big-endian 16-bit word at `off` of a template (off <= GEN_MAX_FRAME - 2). */
static __always_inline __u16 word_at(const struct gen_template *t, __u32 off)
{
	return ((__u16)t->data[off] << 8) | t->data[off + 1];
}

/* RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'), in one's complement arithmetic. */
static __always_inline __u16 csum_replace(__u16 hc, __u16 old, __u16 new)
{
	__u32 s = (__u16)~hc;

	s += (__u16)~old;
	s += new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline int put_word(struct xdp_md *ctx, __u32 off, __u16 v)
{
	__u8 b[2] = { v >> 8, v & 0xff };

	return bpf_xdp_store_bytes(ctx, off, b, 2);
}

SEC("xdp")
int gen_tx(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct gen_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct gen_counters *c = bpf_map_lookup_elem(&gen_counters, &zero);

	if (!cfg || !c || cfg->templates == 0)
		return XDP_ABORTED;
	__u64 now = bpf_ktime_get_ns();
	if (cfg->stop_ns && now >= cfg->stop_ns)
		return XDP_DROP;
	if (cfg->gap_ns) {
		__u64 next = c->next_ns;
		if (now < next)
			return XDP_DROP;
		if (now - next > cfg->burst_ns)
			next = now - cfg->burst_ns;
		c->next_ns = next + cfg->gap_ns;
	}
	__u64 seq = c->seq;
	__u32 idx = seq % cfg->templates;
	__u32 rounds = cfg->rounds ? cfg->rounds : 1;
	__u32 round = (seq / cfg->templates) % rounds;
	struct gen_template *t = bpf_map_lookup_elem(&templates, &idx);

	if (!t)
		goto fail;
	__u32 len = t->len;
	if (len < 14 || len > GEN_MAX_FRAME)
		goto fail;
	/* Every repetition starts from the data_in length; make it the template's. */
	int cur = (int)bpf_xdp_get_buff_len(ctx);
	if (bpf_xdp_adjust_tail(ctx, (int)len - cur))
		goto fail;
	if (bpf_xdp_store_bytes(ctx, 0, t->data, len))
		goto fail;

	__u32 voff = t->vary_off;
	if (voff && round && voff <= GEN_MAX_FRAME - 2 && voff + 2 <= len) {
		__u16 old = word_at(t, voff);
		__u16 new = old + (__u16)(round * cfg->stride);
		if (put_word(ctx, voff, new))
			goto fail;
		__u32 ip = t->ip_csum_off;
		if (ip && ip <= GEN_MAX_FRAME - 2 && ip + 2 <= len) {
			if (put_word(ctx, ip, csum_replace(word_at(t, ip), old, new)))
				goto fail;
		}
		__u32 l4 = t->l4_csum_off;
		if (l4 && l4 <= GEN_MAX_FRAME - 2 && l4 + 2 <= len) {
			__u16 sum = csum_replace(word_at(t, l4), old, new);
			if (t->udp && sum == 0)
				sum = 0xffff;
			if (put_word(ctx, l4, sum))
				goto fail;
		}
	}
	if (seq == 0)
		c->first_ns = now;
	c->last_ns = now;
	c->seq = seq + 1;
	return XDP_TX;
fail:
	c->errors++;
	return XDP_ABORTED;
}

static __always_inline void count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct sink_counters *s = bpf_map_lookup_elem(&sink_counters, &zero);

	if (s) {
		s->packets++;
		s->bytes += bpf_xdp_get_buff_len(ctx);
	}
}

SEC("xdp")
int sink_drop(struct xdp_md *ctx)
{
	count(ctx);
	return XDP_DROP;
}

SEC("xdp")
int sink_pass(struct xdp_md *ctx)
{
	count(ctx);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

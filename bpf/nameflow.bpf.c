// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nameflow's XDP program: steers every frame that can carry IP from RX queue q
 * to the AF_XDP socket in XSKMAP[q], lets everything else reach the kernel, and
 * counts what it did per CPU. An optional LPM trie of CIDRs passes (bypass) or
 * drops matching traffic before it costs user space anything.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "nameflow.h"

/* Ethertypes seen in front of IP that the user-space decoder understands. */
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_QINQ1_ 0x9100
#define ETH_P_MPLS_UC_ 0x8847
#define ETH_P_MPLS_MC_ 0x8848
#define ETH_P_PPP_SES_ 0x8864

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, NF_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_xdp_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NF_MAX_FILTERS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_lpm_key);
	__type(value, __u8);
} filter SEC(".maps");

/* Set by user space between open and load (a read-only global, so the
 * verifier prunes the filter code when it is off). */
const volatile struct nf_xdp_config cfg = {
	.filter_enabled = 0,
	.pass_non_ip = 1,
};

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

/* Looks one address up in the trie: 0 when no CIDR holds it. */
static __always_inline __u8 filter_lookup(struct nf_lpm_key *key)
{
	__u8 *action = bpf_map_lookup_elem(&filter, key);
	return action ? *action : 0;
}

/*
 * The filter action for an IP frame whose network header starts at `l3`, or 0
 * when neither address is listed (or the header is cut short, which user space
 * will count as truncated).
 */
static __always_inline __u8 filter_ip(void *l3, void *end, __u16 proto)
{
	struct nf_lpm_key key = {};
	__u8 action;

	if (proto == ETH_P_IP) {
		__u8 *ip = l3;
		if ((void *)(ip + 20) > end)
			return 0;
		key.prefixlen = 128;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], ip + 12, 4);
		action = filter_lookup(&key);
		if (action)
			return action;
		__builtin_memcpy(&key.addr[12], ip + 16, 4);
		return filter_lookup(&key);
	}
	if (proto == ETH_P_IPV6) {
		__u8 *ip = l3;
		if ((void *)(ip + 40) > end)
			return 0;
		key.prefixlen = 128;
		__builtin_memcpy(key.addr, ip + 8, 16);
		action = filter_lookup(&key);
		if (action)
			return action;
		__builtin_memcpy(key.addr, ip + 24, 16);
		return filter_lookup(&key);
	}
	return 0;
}

SEC("xdp")
int nameflow_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct nf_xdp_counters *c = bpf_map_lookup_elem(&counters, &zero);

	/* The per-CPU array always has its one slot; the check satisfies the
	 * verifier. */
	if (!c)
		return XDP_PASS;
	c->seen++;
	c->seen_bytes += (__u64)(end - data);

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end) {
		/* Too short for Ethernet: user space counts it as truncated. */
		goto redirect;
	}
	__u16 proto = bpf_ntohs(eth->h_proto);
	void *l3 = eth + 1;

	/* Up to two VLAN tags (802.1Q, 802.1ad, QinQ). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q_ && proto != ETH_P_8021AD_ && proto != ETH_P_QINQ1_)
			break;
		struct vlan_hdr_ *vh = l3;
		if ((void *)(vh + 1) > end)
			goto redirect;
		proto = bpf_ntohs(vh->proto);
		l3 = vh + 1;
	}

	switch (proto) {
	case ETH_P_IP:
	case ETH_P_IPV6:
		if (cfg.filter_enabled) {
			__u8 action = filter_ip(l3, end, proto);
			if (action == NF_FILTER_PASS) {
				c->passed_bypass++;
				return XDP_PASS;
			}
			if (action == NF_FILTER_DROP) {
				c->dropped_filter++;
				return XDP_DROP;
			}
		}
		goto redirect;
	case ETH_P_8021Q_:
	case ETH_P_8021AD_:
	case ETH_P_QINQ1_:
	case ETH_P_MPLS_UC_:
	case ETH_P_MPLS_MC_:
	case ETH_P_PPP_SES_:
		/* Deeper tag stacks, MPLS and PPPoE can carry IP: user space
		 * decodes them (the filter does not look inside). */
		goto redirect;
	default:
		if (cfg.pass_non_ip) {
			c->passed_non_ip++;
			return XDP_PASS;
		}
		c->dropped_filter++;
		return XDP_DROP;
	}

redirect:;
	/* XDP_PASS is the fallback when the queue has no socket, so an
	 * uncaptured queue keeps working for the kernel. */
	long ret = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (ret == XDP_REDIRECT)
		c->redirected++;
	else
		c->redirect_failed++;
	return ret;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

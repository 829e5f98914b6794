/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Everything that both the XDP program (nameflow.bpf.c) and the Rust side
 * (src/capture/xdp.rs) read. The Rust side gets these types from the skeleton
 * that build.rs generates, so a field added here reaches both sides in one
 * build; never mirror them by hand.
 */
#ifndef NAMEFLOW_H
#define NAMEFLOW_H

#include <linux/types.h>

/* The XSKMAP has one slot per RX queue; queues beyond it are not captured. */
#define NF_MAX_QUEUES 256

/* The bypass/filter trie holds at most this many CIDRs. */
#define NF_MAX_FILTERS 4096

/*
 * Per-CPU packet counters, one record per CPU in the `counters` map. Each CPU
 * writes only its own copy, so the program needs no atomic operations; user
 * space sums the copies when it gathers statistics.
 */
struct nf_xdp_counters {
	/* Every frame the program ran on. */
	__u64 seen;
	/* Bytes of every frame the program ran on. */
	__u64 seen_bytes;
	/* Frames handed to the AF_XDP socket of their RX queue. */
	__u64 redirected;
	/* Frames that cannot carry IP (ARP, LLDP, ...), passed to the kernel. */
	__u64 passed_non_ip;
	/* Frames whose address matched a `pass` CIDR, passed to the kernel. */
	__u64 passed_bypass;
	/* Frames whose address matched a `drop` CIDR, dropped before user space. */
	__u64 dropped_filter;
	/* Frames on a queue with no socket in the XSKMAP (queue not captured),
	 * passed to the kernel. */
	__u64 redirect_failed;
};

/* What a CIDR in the filter trie does to a frame whose source or destination
 * address falls in it. */
enum nf_filter_action {
	NF_FILTER_PASS = 1,
	NF_FILTER_DROP = 2,
};

/*
 * Key of the filter trie. IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d, prefix length + 96), so one trie serves both families.
 */
struct nf_lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Read-only settings, fixed by user space before the program is loaded. */
struct nf_xdp_config {
	/* Non-zero: look every IP frame up in the filter trie. */
	__u32 filter_enabled;
	/* Non-zero: pass frames that cannot carry IP to the kernel (the default);
	 * zero: drop them. */
	__u32 pass_non_ip;
};

#endif

#!/usr/bin/env bash
# Prepares a capture NIC for nameflow: as many RX channels as workers, a symmetric RSS hash
# (both directions of a connection on the same queue, hence the same worker), IRQs pinned to
# the worker cores, no offload that merges or rewrites frames before XDP sees them, and
# optionally the busy-poll settings. See docs/operations.md.
#
# Usage: nic-setup.sh IFACE [--workers N] [--cpus LIST] [--busy-poll USECS] [--dry-run]
#   --workers N      RX channels to configure (default: the number of cores in --cpus, else 1)
#   --cpus LIST      cores of the workers, e.g. 2,3,4,5 (IRQ of queue i -> LIST[i mod n])
#   --busy-poll US   set net.core.busy_poll/busy_read and the device's NAPI deferral for
#                    `nameflow capture --busy-poll US`
#   --dry-run        print the commands instead of running them
#
# Every step reports what it did; a step the driver does not support is a warning, not a
# failure (veth, for instance, has no RSS and no IRQs of its own).
set -euo pipefail

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

IFACE=""
WORKERS=""
CPUS=""
BUSY_POLL=""
DRY=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workers) WORKERS=${2:?--workers needs a number}; shift 2 ;;
        --cpus) CPUS=${2:?--cpus needs a list such as 2,3}; shift 2 ;;
        --busy-poll) BUSY_POLL=${2:?--busy-poll needs microseconds}; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage 0 ;;
        -*) echo "nic-setup: unknown option $1" >&2; usage ;;
        *) [[ -z "$IFACE" ]] || { echo "nic-setup: one interface only" >&2; usage; }; IFACE=$1; shift ;;
    esac
done
[[ -n "$IFACE" ]] || { echo "nic-setup: give the capture interface" >&2; usage; }
if [[ ! -e "/sys/class/net/$IFACE" ]]; then
    echo "nic-setup: no interface $IFACE here (see \`ip link\`)" >&2
    exit 1
fi
IFS=, read -r -a CPU_LIST <<< "${CPUS}"
if [[ -z "$WORKERS" ]]; then
    WORKERS=${#CPU_LIST[@]}
    [[ "$WORKERS" -gt 0 ]] || WORKERS=1
fi
[[ "$WORKERS" =~ ^[0-9]+$ && "$WORKERS" -ge 1 ]] || { echo "nic-setup: --workers must be a positive number" >&2; exit 1; }

run() {
    echo "+ $*"
    if [[ $DRY -eq 0 ]]; then
        "$@"
    fi
}

# Writes VALUE to a /proc or /sys FILE (printed as a command in dry-run mode).
put() {
    echo "+ echo $1 > $2"
    if [[ $DRY -eq 0 ]]; then
        echo "$1" > "$2"
    fi
}

warn() {
    echo "nic-setup: warning: $*" >&2
}

# 1. Channels: one RX queue per worker. NICs use combined channels; veth and some drivers
#    have separate RX and TX counts.
channels=$(ethtool -l "$IFACE" 2>/dev/null || true)
max_combined=$(awk '/Pre-set maximums/{p=1} p && /^Combined:/{print $2; exit}' <<< "$channels")
max_rx=$(awk '/Pre-set maximums/{p=1} p && /^RX:/{print $2; exit}' <<< "$channels")
if [[ "$max_combined" =~ ^[0-9]+$ && "$max_combined" -gt 0 ]]; then
    if [[ "$WORKERS" -gt "$max_combined" ]]; then
        warn "$IFACE has at most $max_combined channels; using $max_combined"
        WORKERS=$max_combined
    fi
    run ethtool -L "$IFACE" combined "$WORKERS" || warn "cannot set $WORKERS combined channels"
elif [[ "$max_rx" =~ ^[0-9]+$ && "$max_rx" -gt 0 ]]; then
    if [[ "$WORKERS" -gt "$max_rx" ]]; then
        warn "$IFACE has at most $max_rx RX queues; using $max_rx"
        WORKERS=$max_rx
    fi
    run ethtool -L "$IFACE" rx "$WORKERS" tx "$WORKERS" || warn "cannot set $WORKERS RX/TX channels"
else
    warn "$IFACE does not report channels (ethtool -l); leaving its queues as they are"
fi

# 2. Symmetric RSS: the kernel's symmetric-xor transform where ethtool and the driver have it
#    (ethtool >= 6.8), else a Toeplitz key of repeated 0x6d5a, which hashes (a,b) and (b,a)
#    alike. The indirection table spreads over the first WORKERS queues.
if ethtool -x "$IFACE" >/dev/null 2>&1; then
    if ethtool -h 2>&1 | grep -q 'symmetric-xor'; then
        run ethtool -X "$IFACE" hfunc toeplitz symmetric-xor equal "$WORKERS" \
            || warn "the driver refused symmetric-xor; trying a symmetric key"
    fi
    key_len=$(ethtool -x "$IFACE" | awk '/RSS hash key:/{getline; print}' | tr -d ' \n' | awk -F: '{print NF}')
    if [[ "$key_len" =~ ^[0-9]+$ && "$key_len" -gt 0 ]]; then
        key=$(for ((i = 0; i < key_len; i += 2)); do printf '6d:5a:'; done | cut -c1-$((key_len * 3 - 1)))
        run ethtool -X "$IFACE" hfunc toeplitz hkey "$key" equal "$WORKERS" \
            || warn "cannot set a symmetric RSS key: flows will be forwarded between workers (see forwarded_share in stats.log)"
    fi
else
    warn "$IFACE has no RSS (ethtool -x); the receiving worker forwards packets to each flow's owner"
fi

# 3. Offloads that hide frames from XDP or change them: GRO/LRO merge segments (Zeek counts
#    packets), hardware VLAN stripping removes the tag the decoder reads.
features=$(ethtool -k "$IFACE" 2>/dev/null || true)
# `ethtool -K` name and the name `ethtool -k` shows.
for pair in gro:generic-receive-offload lro:large-receive-offload rx-gro-hw:rx-gro-hw \
    rxvlan:rx-vlan-offload rx-vlan-stag-hw-parse:rx-vlan-stag-hw-parse; do
    short=${pair%%:*}
    long=${pair#*:}
    if grep -Eq "^$long: on( |$)" <<< "$features"; then
        run ethtool -K "$IFACE" "$short" off || warn "cannot turn $short off"
    fi
done

# 4. IRQ affinity: queue i's interrupt on the core of worker i, so a queue's packets are
#    handled where its worker runs (irqbalance would undo this: stop it or exclude the IRQs).
if [[ ${#CPU_LIST[@]} -gt 0 ]]; then
    irqs=()
    if [[ -d "/sys/class/net/$IFACE/device/msi_irqs" ]]; then
        mapfile -t irqs < <(ls "/sys/class/net/$IFACE/device/msi_irqs" | sort -n)
        # Keep those /proc/interrupts names after the interface's queues, when it names them.
        named=()
        for irq in "${irqs[@]}"; do
            if grep -Eq "^ *$irq:.*($IFACE|TxRx|rx|comp)" /proc/interrupts; then
                named+=("$irq")
            fi
        done
        [[ ${#named[@]} -eq 0 ]] || irqs=("${named[@]}")
    fi
    if [[ ${#irqs[@]} -eq 0 ]]; then
        warn "$IFACE has no IRQs of its own (virtual device?); skipping IRQ affinity"
    else
        if pgrep -x irqbalance >/dev/null 2>&1; then
            warn "irqbalance is running and may move these IRQs again"
        fi
        i=0
        for irq in "${irqs[@]}"; do
            [[ $i -lt $WORKERS ]] || break
            put "${CPU_LIST[$((i % ${#CPU_LIST[@]}))]}" "/proc/irq/$irq/smp_affinity_list" \
                || warn "cannot pin IRQ $irq"
            i=$((i + 1))
        done
    fi
fi

# 5. Busy polling (optional): the sockets poll the driver themselves; the device defers its
#    interrupts while they do.
if [[ -n "$BUSY_POLL" ]]; then
    run sysctl -w "net.core.busy_poll=$BUSY_POLL" "net.core.busy_read=$BUSY_POLL"
    put 2 "/sys/class/net/$IFACE/napi_defer_hard_irqs"
    put 200000 "/sys/class/net/$IFACE/gro_flush_timeout"
fi

echo "nic-setup: $IFACE ready for $WORKERS worker(s)${CPUS:+ on cores $CPUS}; start nameflow with --workers $WORKERS${CPUS:+ --cpus $CPUS}"

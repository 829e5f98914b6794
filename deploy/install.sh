#!/usr/bin/env bash
# Installs nameflow as a systemd service: the binary, the units, the NIC setup script, a
# config file (an existing one is kept), the nameflow user and its log and state folders.
# Then it checks the config and, where systemd runs, enables and starts the service.
#
# Usage: deploy/install.sh [--binary PATH] [--root DIR] [--no-start] [--dry-run]
#   --binary PATH  the nameflow binary (default: target/release/nameflow; build it with
#                  `cargo build --release`)
#   --root DIR     install below DIR instead of / (packaging, tests); no user is created and
#                  nothing is started
#   --no-start     install and enable, but do not start
#   --dry-run      print the commands instead of running them
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
BIN="$repo/target/release/nameflow"
ROOT=""
START=1
DRY=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) BIN=${2:?--binary needs a path}; shift 2 ;;
        --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
        --no-start) START=0; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
ROOT=${ROOT%/}

run() {
    echo "+ $*"
    if [[ $DRY -eq 0 ]]; then
        "$@"
    fi
}

if [[ ! -x "$BIN" ]]; then
    echo "install: no nameflow binary at $BIN: run \`cargo build --release\` or give --binary PATH" >&2
    exit 1
fi
if [[ -z "$ROOT" && $(id -u) -ne 0 && $DRY -eq 0 ]]; then
    echo "install: installing into / needs root (or use --root DIR)" >&2
    exit 1
fi

# The user the service runs as (the unit's User=); system account, no login, no home.
if [[ -z "$ROOT" ]]; then
    if ! getent passwd nameflow >/dev/null; then
        run useradd --system --user-group --no-create-home --home-dir /var/lib/nameflow \
            --shell /usr/sbin/nologin --comment "nameflow network sensor" nameflow
    fi
    owner=(-o root -g nameflow)
    dirowner=(-o nameflow -g nameflow)
else
    echo "install: --root: not creating the nameflow user; the package's scripts must"
    owner=()
    dirowner=()
fi

run install -d -m 0755 "$ROOT/usr/local/bin" "$ROOT/usr/local/sbin" "$ROOT/etc/systemd/system" \
    "$ROOT/usr/share/doc/nameflow"
run install -d -m 0750 "${owner[@]}" "$ROOT/etc/nameflow"
run install -d -m 0750 "${dirowner[@]}" "$ROOT/var/log/nameflow" "$ROOT/var/lib/nameflow"
run install -m 0755 "$BIN" "$ROOT/usr/local/bin/nameflow"
run install -m 0755 "$here/nic-setup.sh" "$ROOT/usr/local/sbin/nameflow-nic-setup"
run install -m 0644 "$here/nameflow.service" "$here/nameflow-nic.service" "$ROOT/etc/systemd/system/"
run install -m 0644 "$repo/docs/operations.md" "$ROOT/usr/share/doc/nameflow/operations.md"
# An existing config is the operator's: keep it, and put the new sample beside it.
for f in nameflow.toml nic.env; do
    dest="$ROOT/etc/nameflow/$f"
    if [[ -e "$dest" ]]; then
        run install -m 0640 "${owner[@]}" "$here/$f" "$dest.new"
        echo "install: kept $dest; the new sample is $dest.new"
    else
        run install -m 0640 "${owner[@]}" "$here/$f" "$dest"
    fi
done

# A config that does not pass is not started.
run "$ROOT/usr/local/bin/nameflow" config check "$ROOT/etc/nameflow/nameflow.toml"

if [[ -n "$ROOT" ]]; then
    echo "install: installed below $ROOT"
    exit 0
fi
if [[ ! -d /run/systemd/system ]]; then
    echo "install: systemd is not running here; start by hand with:"
    echo "  nameflow-nic-setup eth1 --workers 4 --cpus 2,3,4,5"
    echo "  nameflow --config /etc/nameflow/nameflow.toml capture --user nameflow"
    exit 0
fi
run systemctl daemon-reload
run systemctl enable nameflow-nic.service nameflow.service
if [[ $START -eq 1 ]]; then
    run systemctl restart nameflow-nic.service nameflow.service
    run systemctl --no-pager status nameflow.service
fi

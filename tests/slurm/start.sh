#!/usr/bin/env bash
# Install (Debian's slurm-wlm and munge) and start a one-node SLURM cluster on this machine,
# for tests/test_slurm.py. Needs root. Idempotent: an already running cluster is left as is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

conf=/etc/slurm/slurm.conf
if [ -e "$conf" ] && ! grep -q "reidquant test cluster" "$conf"; then
    echo "tests/slurm/start.sh: $conf exists and is not ours; not touching this machine's SLURM" >&2
    exit 1
fi

if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    exit 0
fi

if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
pgrep -x munged >/dev/null || runuser -u munge -- munged 2>/dev/null || munged --force

host="$(hostname -s)"
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$(nproc)/" -e "s/@MEMORY@/$memory/" "$here/slurm.conf.in" > "$conf"

pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
slurmctld -c
slurmd -c
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
        exit 0
    fi
    sleep 1
done
echo "tests/slurm/start.sh: the node did not become idle; see /var/log/slurm/" >&2
sinfo >&2 || true
exit 1

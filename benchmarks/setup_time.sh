#!/usr/bin/env bash
# Set-up time of the README on a fresh machine, stood in for by a new Debian 12 root.
#
#   sudo benchmarks/setup_time.sh [ROOT_DIR]
#
# Builds a minimal Debian bookworm root (debootstrap), gives it what a machine of this kind has
# before the set-up (Python 3.11 with venv, gcc, git; not timed), then times the README's
# set-up command in it, apt part and pip part (a new venv, pip's cache off), and the main job.
# Handed in from the host: the folder pip's PIP_FIND_LINKS names, if any (a machine of this
# kind keeps its PyTorch wheel there), and the CA bundle of SSL_CERT_FILE, if set (for a proxy
# that re-signs TLS). ROOT_DIR defaults to a new temporary folder. Run it on an idle machine.
set -uo pipefail
cd "$(dirname "$0")/.."
root="${1:-$(mktemp -d)/root}"
wheels="${PIP_FIND_LINKS:-}"
apt-get install -y -q debootstrap bc > /dev/null
rm -rf "$root"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian > /dev/null
mount --bind /proc "$root/proc"
trap '[ -n "$wheels" ] && umount "$root$wheels" 2>/dev/null; umount "$root/proc"' EXIT
in_root() { chroot "$root" bash -c "$1"; }
in_root "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-dev gcc g++ git" > /dev/null
bundle=/etc/ssl/certs/ca-certificates.crt  # Debian's, where pip inside the root looks
if [ -n "${SSL_CERT_FILE:-}" ]; then cp "$SSL_CERT_FILE" "$root$bundle"; fi
if [ -n "$wheels" ]; then mkdir -p "$root$wheels" && mount --bind "$wheels" "$root$wheels"; fi
inside=/opt  # a folder of the new root (not of this machine) for the clone and its venv
git clone -q . "$root$inside/bgnn"

seconds() { local start; start=$(date +%s.%N); "$@" > /dev/null 2>&1; local rc=$?
            echo "$(echo "$(date +%s.%N) - $start" | bc) s (exit $rc)"; }
echo "apt:      $(seconds in_root "apt-get update -q && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends liggghts libegl1 libegl-mesa0")"
echo "pip:      $(seconds in_root "cd $inside/bgnn && python3 -m venv $inside/venv && \
    . $inside/venv/bin/activate && PIP_CERT=$bundle PIP_FIND_LINKS='$wheels' \
    pip install -q --no-cache-dir torch==2.13.0 -e '.[dev]'")"
echo "main job: $(seconds in_root "cd $inside/bgnn && . $inside/venv/bin/activate && \
    bgnn simulate meshes/hopper.stl")"

#!/usr/bin/env bash
# Runs every benchmark and prints their JSON results; paste the figures into bench/README.md.
set -euo pipefail
cd "$(dirname "$0")"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(python3 --version), load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 b1_chain.py --repeat 5
python3 b2_foreach.py --repeat 5
python3 b3_attach.py --repeat 5
python3 b3_chain.py --repeat 5
python3 b4_resume_latency.py --samples 15 --repeat 5
python3 b6_large_global.py --repeat 7

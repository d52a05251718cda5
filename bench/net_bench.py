#!/usr/bin/env python3
"""Runs bench/net_bench (virtio-net device path vs the raw TAP limit) and prints a table.

Needs root (net_bench moves into its own network namespace and creates a TAP there) and a
built tree: ninja -C build bench/net_bench.

Usage: python3 bench/net_bench.py [--bench build/bench/net_bench] [--seconds 2] [--json]
"""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--bench', default='build/bench/net_bench', help='the net_bench binary')
    ap.add_argument('--seconds', type=float, default=2.0, help='timed seconds per case')
    ap.add_argument('--json', action='store_true', help='print the raw JSON lines instead')
    args = ap.parse_args()

    proc = subprocess.run([args.bench, f'--seconds={args.seconds}'], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return

    limits = {r['case']: r for r in rows if r['path'].startswith('raw')}
    print(f"{'case':<16} {'path':<18} {'frames/s':>10} {'MB/s':>9} {'of raw':>7} "
          f"{'frames/CPU-s':>13} {'of raw':>7} {'errors':>7}")
    for r in rows:
        limit = limits.get(r['case'])
        share = cpu_share = ''
        if limit and not r['path'].startswith('raw'):
            share = f"{100 * r['frames_per_s'] / limit['frames_per_s']:.0f}%"
            cpu_share = f"{100 * r['frames_per_cpu_s'] / limit['frames_per_cpu_s']:.0f}%"
        print(f"{r['case']:<16} {r['path']:<18} {r['frames_per_s']:>10,.0f} "
              f"{r['mb_per_s']:>9,.1f} {share:>7} {r['frames_per_cpu_s']:>13,.0f} "
              f"{cpu_share:>7} {r['errors']:>7}")

if __name__ == '__main__':
    main()

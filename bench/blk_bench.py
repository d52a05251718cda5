#!/usr/bin/env python3
"""virtio-blk device-path benchmark: petrel's device (bench/blk_bench, both disk engines)
against fio (io_uring and psync) on the same file, same block sizes, queue depth and
duration, all through the host page cache (buffered, not O_DIRECT).

Workloads: 4 KiB random read, 4 KiB random write (IOPS), 1 MiB sequential read and write
(MiB/s), and the CPU time each costs per request. The file (default 1 GiB) is written with data once, before the runs, so reads
hit allocated blocks (in the page cache after the first run). Figures only; nothing is
asserted. Progress goes to stderr.

Usage: python3 bench/blk_bench.py [--bench build/bench/blk_bench] [--file PATH]
           [--size-mib 1024] [--qd 32] [--seconds 3] [--json] [--keep-file]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

WORKLOADS = [
    ('randread', 4096, 'randread'),
    ('randwrite', 4096, 'randwrite'),
    ('seqread', 1 << 20, 'read'),
    ('seqwrite', 1 << 20, 'write'),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def make_file(path, size_mib):
    if os.path.exists(path) and os.path.getsize(path) == size_mib << 20:
        return
    log(f'writing {size_mib} MiB to {path}')
    block = os.urandom(1 << 20)
    with open(path, 'wb') as f:
        for _ in range(size_mib):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())


def run_petrel(bench, path, engine, workload, bs, qd, seconds):
    out = subprocess.run([bench, '--file', path, '--engine', engine, '--workload', workload,
                          '--bs', str(bs), '--qd', str(qd), '--seconds', str(seconds)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_fio(fio, path, ioengine, rw, bs, qd, seconds, size_mib):
    cmd = [fio, '--name=blk', f'--filename={path}', f'--size={size_mib}M', f'--rw={rw}',
           f'--bs={bs}', f'--ioengine={ioengine}', f'--iodepth={qd}', '--direct=0', '--invalidate=0',
           f'--runtime={seconds}', '--time_based', '--randrepeat=0', '--norandommap',
           '--output-format=json']
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    # fio may print notes (e.g. psync capping the queue depth at 1) before the JSON.
    job = json.loads(out.stdout[out.stdout.index('{'):])['jobs'][0]
    part = job['write'] if 'write' in rw else job['read']
    ios = max(1, part['total_ios'])
    cpu_s = (job['usr_cpu'] + job['sys_cpu']) / 100 * job['job_runtime'] / 1000
    return {'iops': part['iops'], 'mib_s': part['bw_bytes'] / (1 << 20), 'errors': job['error'],
            'cpu_us_per_op': cpu_s / ios * 1e6}


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bench', default=os.path.join(root, 'build', 'bench', 'blk_bench'))
    ap.add_argument('--fio', default=shutil.which('fio') or '/usr/bin/fio')
    ap.add_argument('--file', default='/var/tmp/petrel-blk-bench.img')
    ap.add_argument('--size-mib', type=int, default=1024)
    ap.add_argument('--qd', type=int, default=32)
    ap.add_argument('--seconds', type=float, default=3)
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--keep-file', action='store_true')
    args = ap.parse_args()

    make_file(args.file, args.size_mib)
    rows = []
    try:
        for name, bs, fio_rw in WORKLOADS:
            for engine in ('uring', 'sync'):
                log(f'petrel {engine} {name}')
                r = run_petrel(args.bench, args.file, engine, name, bs, args.qd, args.seconds)
                rows.append({'tool': f'petrel device ({r["engine"]})', 'workload': name,
                             'bs': bs, 'iops': r['iops'], 'mib_s': r['mib_s'],
                             'errors': r['errors'],
                             'cpu_us_per_op': r['cpu_s'] / max(1, r['ops']) * 1e6})
            for ioengine in ('io_uring', 'psync'):
                log(f'fio {ioengine} {name}')
                r = run_fio(args.fio, args.file, ioengine, fio_rw, bs, args.qd,
                            max(1, int(args.seconds)), args.size_mib)
                rows.append({'tool': f'fio ({ioengine})', 'workload': name, 'bs': bs,
                             'iops': r['iops'], 'mib_s': r['mib_s'], 'errors': r['errors'],
                             'cpu_us_per_op': r['cpu_us_per_op']})
    finally:
        if not args.keep_file:
            os.unlink(args.file)

    if args.json:
        print(json.dumps({'qd': args.qd, 'seconds': args.seconds, 'size_mib': args.size_mib,
                          'rows': rows}, indent=2))
        return
    print(f'queue depth {args.qd} (psync: 1), {args.seconds} s per run, '
          f'{args.size_mib} MiB file, buffered (page cache)')
    print(f'| {"workload":<10} | {"tool":<28} | {"IOPS":>9} | {"MiB/s":>8} | {"CPU µs/op":>9} |')
    print(f'|{"-" * 12}|{"-" * 30}|{"-" * 11}|{"-" * 10}|{"-" * 11}|')
    for r in rows:
        print(f'| {r["workload"]:<10} | {r["tool"]:<28} | {r["iops"]:>9.0f} | '
              f'{r["mib_s"]:>8.1f} | {r["cpu_us_per_op"]:>9.1f} |')
    print('CPU µs/op: user + system CPU time of the process (petrel: io_uring workers '
          'included) per request.')


if __name__ == '__main__':
    main()

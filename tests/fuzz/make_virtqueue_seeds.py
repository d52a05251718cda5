#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_virtqueue.cc (input layout: see that file's header).

Usage: tests/fuzz/make_virtqueue_seeds.py [OUT_DIR]   (default: tests/fuzz/corpus/virtqueue)
"""
import os
import struct
import sys

DESC, AVAIL, USED = 0x0, 0x200, 0x300
NEXT, WRITE, INDIRECT = 1, 2, 4


def seed(size_log2, features, next_avail=0, next_used=0, op_seed=1):
    return bytearray(struct.pack('<BBHHH', size_log2, features, next_avail, next_used, op_seed))


class Image:
    def __init__(self, size):
        self.mem = bytearray(0x1000)
        self.size = size

    def desc(self, i, addr, length, flags=0, nxt=0, table=DESC):
        struct.pack_into('<QIHH', self.mem, table + 16 * i, addr, length, flags, nxt)

    def avail(self, idx, heads, flags=0, used_event=0):
        struct.pack_into('<HH', self.mem, AVAIL, flags, idx)
        for slot, head in heads:
            struct.pack_into('<H', self.mem, AVAIL + 4 + 2 * (slot % self.size), head)
        struct.pack_into('<H', self.mem, AVAIL + 4 + 2 * self.size, used_event)

    def bytes(self, header):
        return bytes(header + self.mem)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'corpus', 'virtqueue')
    os.makedirs(out, exist_ok=True)
    seeds = {}

    # Two chains: readable + writable, and a single writable buffer. Queue size 8.
    img = Image(8)
    img.desc(0, 0x800, 16, NEXT, 1)
    img.desc(1, 0x900, 64, WRITE)
    img.desc(2, 0xa00, 32, WRITE)
    img.avail(2, [(0, 0), (1, 2)])
    seeds['normal'] = img.bytes(seed(3, 0))

    # An indirect chain (INDIRECT_DESC negotiated), with EVENT_IDX and dirty logging.
    img = Image(8)
    img.desc(0, 0x600, 48, INDIRECT)
    img.desc(0, 0x800, 8, NEXT, 1, table=0x600)
    img.desc(1, 0x900, 100, NEXT | WRITE, 2, table=0x600)
    img.desc(2, 0x9000, 0x100, WRITE, table=0x600)  # in the second RAM region
    img.avail(1, [(0, 0)], used_event=0)
    seeds['indirect'] = img.bytes(seed(3, 1 | 2 | 4))

    # EVENT_IDX with indices about to wrap at 65536.
    img = Image(4)
    img.desc(0, 0x800, 4, WRITE)
    img.desc(1, 0x810, 4, WRITE)
    img.avail(0, [(65534, 0), (65535, 1)], used_event=65535)
    seeds['wrap'] = img.bytes(seed(2, 1, next_avail=65534, next_used=65534, op_seed=7))

    # A loop 0 -> 1 -> 0 (must end with an error).
    img = Image(2)
    img.desc(0, 0x800, 4, NEXT, 1)
    img.desc(1, 0x800, 4, NEXT, 0)
    img.avail(1, [(0, 0)])
    seeds['loop'] = img.bytes(seed(1, 0))

    # A buffer crossing the end of the first RAM region; NO_INTERRUPT.
    img = Image(16)
    img.desc(0, 0x7ff0, 0x20, WRITE)
    img.avail(1, [(0, 0)], flags=1)
    seeds['cross_region'] = img.bytes(seed(4, 0, op_seed=3))

    for name, data in seeds.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()

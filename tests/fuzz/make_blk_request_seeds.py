#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_block_request.cc (input layout: see that file's header).

Usage: tests/fuzz/make_blk_request_seeds.py [OUT_DIR]   (default: tests/fuzz/corpus/blk_request)
"""
import os
import struct
import sys

DESC, AVAIL, USED = 0x0, 0x200, 0x300
NEXT, WRITE, INDIRECT = 1, 2, 4
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
F_EVENT_IDX, F_INDIRECT, F_RO, F_DISCARD, F_WZ, F_FLUSH = 1, 2, 4, 8, 16, 32
ALL = F_DISCARD | F_WZ | F_FLUSH


class Image:
    """A queue of 16 entries; requests are laid out from 0x1000 on."""

    def __init__(self, size_log2=4):
        self.size = 1 << size_log2
        self.size_log2 = size_log2
        self.mem = bytearray(0x1000)
        self.next_desc = 0
        self.heads = []

    def alloc(self, data):
        addr = len(self.mem)
        self.mem += data
        while len(self.mem) % 16:
            self.mem.append(0)
        return addr

    def desc(self, i, addr, length, flags=0, nxt=0):
        struct.pack_into('<QIHH', self.mem, DESC + 16 * i, addr, length, flags, nxt)

    def request(self, rtype, sector, data=(), status=True):
        """data: list of (bytes or length, writable)."""
        bufs = [(self.alloc(struct.pack('<IIQ', rtype, 0, sector)), 16, 0)]
        for item, writable in data:
            payload = item if isinstance(item, bytes) else bytes(item)
            bufs.append((self.alloc(payload), len(payload), WRITE if writable else 0))
        if status:
            bufs.append((self.alloc(b'\xff'), 1, WRITE))
        head = self.next_desc
        for n, (addr, length, flags) in enumerate(bufs):
            i = self.next_desc
            self.next_desc = (self.next_desc + 1) % self.size
            last = n + 1 == len(bufs)
            self.desc(i, addr, length, flags | (0 if last else NEXT), 0 if last else self.next_desc)
        self.heads.append(head)

    def bytes(self, features, kicks=1):
        for slot, head in enumerate(self.heads):
            struct.pack_into('<H', self.mem, AVAIL + 4 + 2 * (slot % self.size), head)
        struct.pack_into('<HH', self.mem, AVAIL, 0, len(self.heads))
        return bytes(struct.pack('<BBBB', self.size_log2, features, kicks - 1, 0)) + bytes(self.mem)


def seg(sector, num, flags=0):
    return struct.pack('<QII', sector, num, flags)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'corpus', 'blk_request')
    os.makedirs(out, exist_ok=True)
    seeds = {}

    img = Image()
    img.request(T_OUT, 3, [(b'\xab' * 1024, False)])
    img.request(T_FLUSH, 0)
    img.request(T_IN, 3, [(512, True), (512, True)])
    seeds['write_flush_read'] = img.bytes(ALL)

    img = Image()
    img.request(T_GET_ID, 0, [(20, True)])
    img.request(T_DISCARD, 0, [(seg(8, 16), False)])
    img.request(T_WRITE_ZEROES, 0, [(seg(32, 8, 1), False)])
    seeds['id_discard_wz'] = img.bytes(ALL | F_EVENT_IDX, kicks=2)

    img = Image()
    img.request(T_IN, 127, [(1024, True)])      # past the end
    img.request(T_OUT, 0, [(b'\x01' * 100, False)])  # misaligned
    img.request(T_IN, 0, [(512, False)])       # wrong direction
    img.request(T_OUT, 0, [(512, False)], status=False)  # no status
    img.request(99, 0, [(16, True)])           # unknown type
    seeds['bad'] = img.bytes(ALL)

    img = Image()
    img.request(T_OUT, 0, [(b'\x02' * 512, False)])
    img.request(T_DISCARD, 0, [(seg(0, 8), False)])
    seeds['read_only'] = img.bytes(ALL | F_RO)

    for name, data in seeds.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
    print(f'wrote {len(seeds)} seeds to {out}')


if __name__ == '__main__':
    main()

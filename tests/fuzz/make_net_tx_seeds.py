#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_net_tx.cc (input layout: see that file's header).

Usage: tests/fuzz/make_net_tx_seeds.py [OUT_DIR]   (default: tests/fuzz/corpus/net_tx)
"""
import os
import struct
import sys

DESC, AVAIL = 0x0, 0x200
NEXT, WRITE, INDIRECT = 1, 2, 4
F_CSUM, F_TSO4, F_TSO6, F_ECN, F_MRG, F_INDIRECT, F_EVENT_IDX = 1, 2, 4, 8, 16, 32, 64
NEEDS_CSUM, GSO_TCPV4 = 1, 1


def header(size_log2, features, frame_len=0):
    return bytearray(struct.pack('<BBH', size_log2, features, frame_len))


class Image:
    def __init__(self, size):
        self.mem = bytearray(0x3000)
        self.size = size

    def desc(self, i, addr, length, flags=0, nxt=0, table=DESC):
        struct.pack_into('<QIHH', self.mem, table + 16 * i, addr, length, flags, nxt)

    def avail(self, heads):
        struct.pack_into('<HH', self.mem, AVAIL, 0, len(heads))
        for slot, head in enumerate(heads):
            struct.pack_into('<H', self.mem, AVAIL + 4 + 2 * slot, head)

    def net_hdr(self, addr, flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0,
                csum_offset=0):
        struct.pack_into('<BBHHHHH', self.mem, addr, flags, gso_type, hdr_len, gso_size,
                         csum_start, csum_offset, 0)

    def bytes(self, hdr):
        return bytes(hdr + self.mem.rstrip(b'\0'))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'corpus', 'net_tx')
    os.makedirs(out, exist_ok=True)
    seeds = {}

    # A plain frame: header and frame in two descriptors.
    img = Image(8)
    img.desc(0, 0x1000, 12, NEXT, 1)
    img.desc(1, 0x1100, 60)
    img.net_hdr(0x1000)
    img.avail([0])
    seeds['plain'] = img.bytes(header(3, 0))

    # A TSO4 frame with a partial checksum, header split across descriptors.
    img = Image(8)
    img.desc(0, 0x1000, 5, NEXT, 1)
    img.desc(1, 0x1005, 7, NEXT, 2)
    img.desc(2, 0x1100, 3000)
    img.net_hdr(0x1000, NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    img.avail([0])
    seeds['tso4'] = img.bytes(header(3, F_CSUM | F_TSO4 | F_ECN))

    # Mergeable receive buffers: three 40-byte chains for a 90-byte frame.
    img = Image(4)
    for i in range(3):
        img.desc(i, 0x1000 + 0x100 * i, 40, WRITE)
    img.avail([0, 1, 2])
    seeds['rx_mergeable'] = img.bytes(header(2, F_MRG, 90))

    # One receive chain in an indirect table, without MRG_RXBUF, EVENT_IDX on.
    img = Image(2)
    img.desc(0, 0x800, 32, INDIRECT)
    img.desc(0, 0x1000, 12, NEXT | WRITE, 1, table=0x800)
    img.desc(1, 0x1100, 1514, WRITE, table=0x800)
    img.avail([0])
    seeds['rx_indirect'] = img.bytes(header(1, F_INDIRECT | F_EVENT_IDX, 1500))

    for name, data in seeds.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Copies a vmlinux, renumbering its PVH entry note (Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY,
type 18) to an unused type, so that a VMM enters it through the 64-bit boot protocol
instead of PVH. Used to test petrel's 64-bit vmlinux entry with the same kernel."""
import struct
import sys

XEN_ELFNOTE_PHYS32_ENTRY = 18
UNUSED_TYPE = 0x7fff0012


def main(src: str, dst: str) -> int:
    data = bytearray(open(src, "rb").read())
    if data[:4] != b"\x7fELF" or data[4] != 2:
        print(f"{src}: not an ELF64 file", file=sys.stderr)
        return 1
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    patched = 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        off, end = p_offset, p_offset + p_filesz
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            name = bytes(data[off + 12:off + 12 + namesz]).rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                struct.pack_into("<I", data, off + 8, UNUSED_TYPE)
                patched += 1
            off += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    if patched == 0:
        print(f"{src}: no PVH entry note found", file=sys.stderr)
        return 1
    open(dst, "wb").write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

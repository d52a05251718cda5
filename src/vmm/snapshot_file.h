// The snapshot state file: named byte sections in one checksummed file, with no knowledge of
// what the sections mean (the vCPU, irqchip, clock and device savers own their bytes). The
// byte layout is docs/snapshot.md's "State file"; in short, all integers little-endian:
//
//   "PETRELSN"  u32 version (1)  u32 section count
//   count x { u32 name length, name bytes, u64 data length, data bytes }
//   32-byte SHA-256 of every byte before it
//
// A state file is untrusted input (it may come from another host, be damaged, or be crafted):
// read_state_file checks every length and count before it allocates or copies anything.
//
// Thread-safety: the functions share no state; any thread may call them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/result.h"

namespace petrel {

struct StateSection {
  std::string name;  // 1..kMaxSectionNameBytes bytes of ASCII 0x21-0x7e, unique in a file
  std::vector<std::byte> data;

  bool operator==(const StateSection&) const = default;
};

inline constexpr std::array<char, 8> kStateFileMagic{'P', 'E', 'T', 'R', 'E', 'L', 'S', 'N'};
inline constexpr uint32_t kStateFileVersion = 1;
inline constexpr uint32_t kMaxStateSections = 4096;
inline constexpr uint32_t kMaxSectionNameBytes = 255;
// The whole file, header and trailer included. Guest RAM lives in the memory file, so the
// state file holds registers and device state: a few MiB even for a large VM.
inline constexpr uint64_t kMaxStateFileBytes = uint64_t{1} << 30;

using Sha256Digest = std::array<std::byte, 32>;

// SHA-256 (FIPS 180-4) of `data`: the state file's trailer. Self-contained, so that petrel
// needs no crypto library; it is an integrity check against damage, not a signature.
Sha256Digest sha256(std::span<const std::byte> data);

// Replaces `path` atomically by what `fill` writes to a new temporary file (an fd open for
// writing, mode 0600) in the same directory: fill, fsync, rename over `path`, fsync the
// directory. A crash or an error leaves either the old file or the new one at `path`; after
// an error (fill's or the system's) the temporary file is removed. A reader that mapped or
// opened the old file keeps the old contents (a new inode replaces it; it is not truncated).
Result<void> replace_file_atomically(const std::filesystem::path& path,
                                     const std::function<Result<void>(int fd)>& fill);

// Writes `sections` to `path` with replace_file_atomically. Refuses (kInvalidArgument,
// before touching the disk) bad or duplicate names, more than kMaxStateSections sections,
// or a file that would exceed kMaxStateFileBytes.
Result<void> write_state_file(const std::filesystem::path& path,
                              const std::vector<StateSection>& sections);

// Reads and checks a state file, returning its sections in file order. Errors name the file:
// kNotFound when it does not exist; kUnsupported for another format version; kInvalidArgument
// for a wrong magic, truncation, a checksum mismatch ("corrupt"), lengths or counts over the
// limits or past the end, bad or duplicate names, and bytes after the last section.
Result<std::vector<StateSection>> read_state_file(const std::filesystem::path& path);

}  // namespace petrel

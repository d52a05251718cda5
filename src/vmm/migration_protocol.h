// Payloads of the migration protocol, version 1 (docs/migration.md is the byte-exact spec).
// Every decode_* takes UNTRUSTED bytes from the peer: each length, count and index is checked
// against what is left and against the limits below before anything is allocated or written,
// and a violation is an ErrorCode::kInvalidArgument naming the frame and the field.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"
#include "vmm/memory_file.h"
#include "vmm/snapshot_file.h"

namespace petrel {

inline constexpr std::array<char, 8> kMigrationMagic{'P', 'E', 'T', 'R', 'E', 'L', 'M', 'G'};
inline constexpr uint32_t kMigrationVersion = 1;
inline constexpr uint32_t kMigrationPageSize = 4096;
inline constexpr size_t kMaxSoftwareBytes = 256;
inline constexpr size_t kRunHeaderBytes = 16;  // u32 region, u64 first page, u32 count

// HELLO (source -> dest) and HELLO_ACK (dest -> source) carry the same body.
struct MigrationHello {
  uint32_t version = kMigrationVersion;
  uint32_t page_size = kMigrationPageSize;
  std::string software;  // "petrel 0.1.0": for messages only, never compared

  bool operator==(const MigrationHello&) const = default;
};
std::vector<std::byte> encode_hello(const MigrationHello& hello);
// Checks the magic and the lengths; the version and page size are the caller's to judge (a
// peer of another version must still be answered with an ERROR naming both).
Result<MigrationHello> decode_hello(std::span<const std::byte> payload);

struct MigrationConfig {
  std::string vm_config_json;
  MemoryLayout layout;
};
std::vector<std::byte> encode_config(const MigrationConfig& config);
Result<MigrationConfig> decode_config(std::span<const std::byte> payload);

// The layout of `memory` as MemoryLayout describes it (regions in guest order, file offsets
// back to back), the layout both sides must share.
MemoryLayout layout_of(const GuestMemory& memory);
// True when `memory` has exactly the regions of `layout` (starts and sizes).
bool memory_matches(const GuestMemory& memory, const MemoryLayout& layout);

// ROUND_END: u32 round.
std::vector<std::byte> encode_round(uint32_t round);
Result<uint32_t> decode_round(std::span<const std::byte> payload);

// A MEMORY frame is the u32 round and then runs; a run is kRunHeaderBytes of header followed
// by count pages of data. encode_run_header writes the header only: the sender gathers the
// page bytes straight from guest memory.
std::array<std::byte, kRunHeaderBytes> encode_run_header(uint32_t region, uint64_t first_page,
                                                         uint32_t count);
struct PageRun {
  uint32_t region;
  uint64_t first_page;              // region-relative
  uint32_t count;                   // >= 1
  std::span<const std::byte> data;  // count * kMigrationPageSize bytes, inside the payload
};
// Checks the whole frame against `layout` (round == expected_round, every run non-empty,
// inside its region, complete) before calling `apply` for any run, so a bad frame writes
// nothing. Returns the number of pages.
Result<uint64_t> decode_memory(std::span<const std::byte> payload, const MemoryLayout& layout,
                               uint32_t expected_round,
                               const std::function<void(const PageRun&)>& apply);

// STATE: u32 section count, then per section u32 name length, name, u64 data length, data.
// Names follow the state file's rules (1..kMaxSectionNameBytes bytes of 0x21-0x7e, unique);
// at most kMaxStateSections.
Result<std::vector<std::byte>> encode_state(const std::vector<StateSection>& sections);
Result<std::vector<StateSection>> decode_state(std::span<const std::byte> payload);

}  // namespace petrel

// Snapshot directories: a paused VM written to disk and read back (docs/snapshot.md).
//
//   DIR/state   the state file (snapshot_file.h): the VM config ("config", JSON), the guest
//               memory layout ("memory.layout") and the machine's sections (Vm::save_state)
//   DIR/memory  guest RAM (memory_file.h): sparse, holes read as zeros
//
// The state file is the commit point: a directory with a state file is a snapshot. Writing
// removes an old state file first, then writes the memory file, then the new state file, so
// a crash in between leaves no snapshot (never an old state over new memory).
//
// Threads: write_snapshot on the VM's controlling thread while the VM is paused;
// read_snapshot anywhere. A snapshot directory is untrusted input for read_snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"
#include "vmm/memory_file.h"
#include "vmm/snapshot_file.h"
#include "vmm/vm.h"
#include "vmm/vm_config.h"

namespace petrel {

inline constexpr const char* kSnapshotStateFile = "state";
inline constexpr const char* kSnapshotMemoryFile = "memory";

struct SnapshotStats {
  uint64_t memory_bytes_written = 0;  // data blocks the memory file occupies (holes excluded)
  uint64_t state_bytes = 0;           // size of the state file
  std::chrono::milliseconds duration{0};
};

// Saves `vm` (paused) with `config` into `dir`: created if absent (parent must exist); an
// existing directory must be empty or hold only a petrel snapshot's files (then replaced).
Result<SnapshotStats> write_snapshot(const std::filesystem::path& dir, const VmConfig& config,
                                     Vm& vm, const PageSkip* skip = nullptr);

// A snapshot read back: its config, the guest memory mapped privately from the memory file
// (pages are read when the guest touches them; the file is never written) and the machine's
// sections for Vm::create_restored.
struct LoadedSnapshot {
  VmConfig config;
  GuestMemory memory;
  std::vector<StateSection> sections;
};

// Reads `dir`. Errors name the directory and what is wrong: no state file, a state file that
// is corrupt, truncated or of another version, a config or layout that does not parse, a
// memory file of the wrong size or missing.
Result<LoadedSnapshot> read_snapshot(const std::filesystem::path& dir);

// The config sections of a snapshot, for tools: parse the "config" section's JSON.
inline constexpr const char* kSnapshotConfigSection = "config";
inline constexpr const char* kSnapshotLayoutSection = "memory.layout";

}  // namespace petrel

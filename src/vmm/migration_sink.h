// MigrationSink: what MigrationReceiver needs from the VM being migrated in. The real side
// builds a VM from the received config (not started), lets the receiver fill its RAM, then
// restores the received state and starts it; tests implement it over a bare GuestMemory.
//
// Threads: every method is called on the receiver's thread, in this order: prepare, memory
// (any number of times), then exactly one of commit (success) or discard (any failure, also
// before or after a failed prepare or commit).
#pragma once

#include <string>
#include <vector>

#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"
#include "vmm/memory_file.h"
#include "vmm/snapshot_file.h"

namespace petrel {

struct MigrationSink {
  virtual ~MigrationSink() = default;

  // Builds the VM from `config_json` (UNTRUSTED text from the stream) with guest RAM of
  // exactly `layout`, zero-filled (round 0 does not send zero pages). The receiver refuses
  // the migration when memory() afterwards does not match `layout`.
  virtual Result<void> prepare(const std::string& config_json, const MemoryLayout& layout) = 0;
  // Valid after a successful prepare(). The receiver copies pages into the regions' host
  // mappings after checking every run against the layout.
  virtual GuestMemory& memory() = 0;
  // Restores `sections` (UNTRUSTED, from the stream) into the prepared VM and starts it.
  virtual Result<void> commit(std::vector<StateSection> sections) = 0;
  // Drops whatever prepare() built. Called at most once, never after a successful commit().
  virtual void discard() = 0;
};

}  // namespace petrel

#include "vmm/vm_migration_sink.h"

#include <fmt/format.h>

#include "vmm/layout.h"

namespace petrel {

Result<void> VmMigrationSink::prepare(const std::string& config_json, const MemoryLayout& layout) {
  auto parsed = parse_config_json(config_json);
  if (!parsed) {
    return std::move(parsed).error().context("the migrated VM's config");
  }
  VmConfig config = host_settings_(std::move(parsed).value());
  const auto specs = layout::ram_regions(config.memory_bytes);
  MemoryLayout want;
  uint64_t offset = 0;
  for (const auto& spec : specs) {
    want.regions.push_back({spec.start.value(), spec.size, offset});
    offset += spec.size;
  }
  if (!(want == layout)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("the sender's memory layout ({} regions, {} bytes) is not the one "
                             "of its config's {} bytes of RAM",
                             layout.regions.size(), layout.file_size(), config.memory_bytes));
  }
  PETREL_TRY_ASSIGN(GuestMemory memory, GuestMemory::create_anonymous(specs));
  memory_.emplace(std::move(memory));
  config_ = std::move(config);
  return {};
}

Result<void> VmMigrationSink::commit(std::vector<StateSection> sections) {
  if (!memory_ || !config_) {
    return Error(ErrorCode::kState, "commit before prepare");
  }
  GuestMemory memory = std::move(*memory_);
  memory_.reset();
  // The source's clock went on while the last pages and the state travelled: the guest's
  // clock covers that downtime (hosts' real-time clocks in sync).
  PETREL_TRY_ASSIGN(vm_, Vm::create_restored(*config_, std::move(memory), sections,
                                             ClockRestore::kAdvanceByRealTime, hooks_));
  return {};
}

void VmMigrationSink::discard() {
  vm_.reset();
  memory_.reset();
  config_.reset();
}

}  // namespace petrel

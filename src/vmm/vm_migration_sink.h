// VmMigrationSink: MigrationReceiver's sink building a Vm: prepare() parses the sender's
// config (untrusted) and allocates guest RAM of its layout, the receiver fills it, commit()
// restores the received state into a new Vm (not started: its owner starts it once the
// source has been acknowledged, take()).
//
// Threads: the receiving thread; take() afterwards on any thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "vmm/migration_sink.h"
#include "vmm/vm.h"

namespace petrel {

class VmMigrationSink final : public MigrationSink {
 public:
  // `host_settings` turns the sender's config into this petrel's (api socket, console, ...).
  VmMigrationSink(std::function<VmConfig(VmConfig)> host_settings, VmHooks hooks)
      : host_settings_(std::move(host_settings)), hooks_(std::move(hooks)) {}

  Result<void> prepare(const std::string& config_json, const MemoryLayout& layout) override;
  GuestMemory& memory() override { return *memory_; }
  Result<void> commit(std::vector<StateSection> sections) override;
  void discard() override;

  // After a successful commit: the restored VM and its config.
  std::unique_ptr<Vm> take_vm() { return std::move(vm_); }
  const VmConfig& config() const { return *config_; }

 private:
  std::function<VmConfig(VmConfig)> host_settings_;
  VmHooks hooks_;
  std::optional<VmConfig> config_;
  std::optional<GuestMemory> memory_;
  std::unique_ptr<Vm> vm_;
};

}  // namespace petrel

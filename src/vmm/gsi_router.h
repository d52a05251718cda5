// GsiRouter: petrel's whole KVM GSI routing table (api.rst 4.52 KVM_SET_GSI_ROUTING).
//
// KVM_SET_GSI_ROUTING replaces the table, so every commit carries KVM's default irqchip
// routes as well: GSIs 0-15 to the PIC (chip 0 for 0-7, chip 1 for 8-15, pin gsi % 8) and
// to the IOAPIC (chip 2, pin gsi), GSIs 16-23 to the IOAPIC only; then one MSI route per
// allocated GSI from kFirstMsiGsi up (a GSI without a message yet has no route, so an irqfd
// on it injects nothing).
//
// Thread affinity: any thread; one mutex guards the table and is held across the commit,
// so KVM always sees the tables in the order they were made.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "devices/msi_vector.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/base/result.h"

namespace petrel {

class GsiRouter {
 public:
  // Hands a complete table to KVM (KvmVm::set_gsi_routing) or, in tests, to a recorder.
  using Commit = std::function<Result<void>(std::span<const kvm_irq_routing_entry>)>;
  static constexpr uint32_t kIrqchipGsis = 24;
  static constexpr uint32_t kFirstMsiGsi = 24;

  // `gsi_limit`: GSIs are < gsi_limit (KVM_CAP_IRQ_ROUTING's answer, KVM_MAX_IRQ_ROUTES).
  GsiRouter(Commit commit, uint32_t gsi_limit);
  // Commits to `vm`, which must outlive the router.
  static std::unique_ptr<GsiRouter> for_vm(const KvmVm& vm);

  // Commits the irqchip routes alone (the table KVM starts with); call once at VM build.
  Result<void> install_defaults();
  // A free GSI >= kFirstMsiGsi, with no route yet.
  Result<uint32_t> allocate();
  // Frees `gsi` and drops its route (committing if it had one).
  Result<void> release(uint32_t gsi);
  // Points `gsi` (from allocate()) at `message` and commits. Nothing is committed when the
  // route is unchanged. On failure the previous route stays in force.
  Result<void> set_msi_route(uint32_t gsi, const MsiMessage& message);

  // The table as last committed (for tests and diagnostics).
  std::vector<kvm_irq_routing_entry> committed() const;

  // Expires when the router is destroyed: a holder of GSIs whose life may outlast the
  // router's (an MSI vector kept alive by a bus after VM teardown began) checks it before
  // calling back. Same thread as the destruction.
  std::weak_ptr<const void> lifetime() const { return alive_; }

 private:
  std::vector<kvm_irq_routing_entry> build_locked() const;
  Result<void> commit_locked();

  Commit commit_;
  const uint32_t gsi_limit_;
  mutable std::mutex mu_;
  std::map<uint32_t, std::optional<MsiMessage>> msi_;  // allocated GSIs and their routes
  std::vector<kvm_irq_routing_entry> committed_;
  std::shared_ptr<const void> alive_ = std::make_shared<int>(0);
};

}  // namespace petrel

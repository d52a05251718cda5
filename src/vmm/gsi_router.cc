#include "vmm/gsi_router.h"

#include <fmt/format.h>

namespace petrel {

namespace {

kvm_irq_routing_entry irqchip_entry(uint32_t gsi, uint32_t chip, uint32_t pin) {
  kvm_irq_routing_entry e{};
  e.gsi = gsi;
  e.type = KVM_IRQ_ROUTING_IRQCHIP;
  e.u.irqchip.irqchip = chip;
  e.u.irqchip.pin = pin;
  return e;
}

// KVM's default routing limit on x86 when the capability cannot be asked.
constexpr uint32_t kDefaultGsiLimit = 1024;

}  // namespace

GsiRouter::GsiRouter(Commit commit, uint32_t gsi_limit)
    : commit_(std::move(commit)), gsi_limit_(gsi_limit) {}

std::unique_ptr<GsiRouter> GsiRouter::for_vm(const KvmVm& vm) {
  const int limit = vm.check_extension(KVM_CAP_IRQ_ROUTING);
  return std::make_unique<GsiRouter>(
      [&vm](std::span<const kvm_irq_routing_entry> entries) { return vm.set_gsi_routing(entries); },
      limit > static_cast<int>(kFirstMsiGsi) ? static_cast<uint32_t>(limit) : kDefaultGsiLimit);
}

Result<void> GsiRouter::install_defaults() {
  std::lock_guard lock(mu_);
  return commit_locked();
}

Result<uint32_t> GsiRouter::allocate() {
  std::lock_guard lock(mu_);
  uint32_t gsi = kFirstMsiGsi;
  for (const auto& [used, route] : msi_) {
    if (used != gsi) {
      break;
    }
    ++gsi;
  }
  if (gsi >= gsi_limit_) {
    return Error(ErrorCode::kOutOfRange, fmt::format("no free GSI below {}", gsi_limit_));
  }
  msi_.emplace(gsi, std::nullopt);
  return gsi;
}

Result<void> GsiRouter::release(uint32_t gsi) {
  std::lock_guard lock(mu_);
  auto it = msi_.find(gsi);
  if (it == msi_.end()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("GSI {} is not allocated", gsi));
  }
  const bool routed = it->second.has_value();
  msi_.erase(it);
  return routed ? commit_locked() : ok();
}

Result<void> GsiRouter::set_msi_route(uint32_t gsi, const MsiMessage& message) {
  std::lock_guard lock(mu_);
  auto it = msi_.find(gsi);
  if (it == msi_.end()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("GSI {} is not allocated", gsi));
  }
  if (it->second == message) {
    return {};
  }
  const std::optional<MsiMessage> previous = it->second;
  it->second = message;
  if (auto r = commit_locked(); !r) {
    it->second = previous;
    return std::move(r).context(
        fmt::format("routing GSI {} to MSI {:#x}/{:#x}", gsi, message.address, message.data));
  }
  return {};
}

std::vector<kvm_irq_routing_entry> GsiRouter::committed() const {
  std::lock_guard lock(mu_);
  return committed_;
}

std::vector<kvm_irq_routing_entry> GsiRouter::build_locked() const {
  std::vector<kvm_irq_routing_entry> table;
  for (uint32_t gsi = 0; gsi < kIrqchipGsis; ++gsi) {
    if (gsi < 16) {
      table.push_back(
          irqchip_entry(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8));
    }
    table.push_back(irqchip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
  }
  for (const auto& [gsi, route] : msi_) {
    if (!route) {
      continue;
    }
    kvm_irq_routing_entry e{};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_MSI;
    e.u.msi.address_lo = static_cast<uint32_t>(route->address);
    e.u.msi.address_hi = static_cast<uint32_t>(route->address >> 32);
    e.u.msi.data = route->data;
    table.push_back(e);
  }
  return table;
}

Result<void> GsiRouter::commit_locked() {
  std::vector<kvm_irq_routing_entry> table = build_locked();
  PETREL_TRY(commit_(table));
  committed_ = std::move(table);
  return {};
}

}  // namespace petrel

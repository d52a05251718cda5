// PciTransport: save and restore (pci_transport.h has the contract).
//
// Encoding: bytes core state (TransportCore::save_state), bytes configuration space
// (PciConfigSpace::save_state), bytes MSI-X (Msix::save_state), u32 config_msix_vector,
// u32 queue count, u32 queue_msix_vector per queue.
#include <fmt/format.h>

#include "virtio/pci_transport.h"

namespace petrel::virtio {

namespace {

constexpr size_t kMaxPart = 256 * 1024;

}  // namespace

Result<void> PciTransport::save_state(StateWriter& out) const {
  StateWriter core;
  PETREL_TRY(core_->save_state(core));
  std::lock_guard lock(mu_);
  out.bytes(core.data());
  out.bytes(config_.save_state());
  out.bytes(msix_->save_state());
  out.u32(config_vector_);
  out.u32(static_cast<uint32_t>(queue_vectors_.size()));
  for (uint16_t v : queue_vectors_) {
    out.u32(v);
  }
  return {};
}

Result<void> PciTransport::restore_state(StateReader& in) {
  PETREL_TRY_ASSIGN(auto core_bytes, in.bytes(kMaxPart));
  StateReader core_in(core_bytes, "virtio-pci transport core");
  PETREL_TRY_ASSIGN(auto core_state, core_->parse_state(core_in));
  PETREL_TRY(core_in.expect_end());
  PETREL_TRY_ASSIGN(auto config_bytes, in.bytes(kMaxPart));
  PETREL_TRY_ASSIGN(auto msix_bytes, in.bytes(kMaxPart));
  const uint16_t vectors = msix_->vectors();
  auto read_vector = [&](std::string_view field) -> Result<uint16_t> {
    PETREL_TRY_ASSIGN(uint32_t v, in.u32());
    if (v != kNoVector && v >= vectors) {
      return in.fail(fmt::format("{} {} is neither NO_VECTOR nor below {}", field, v, vectors));
    }
    return static_cast<uint16_t>(v);
  };
  PETREL_TRY_ASSIGN(uint16_t config_vector, read_vector("config_msix_vector"));
  PETREL_TRY_ASSIGN(uint32_t count, in.u32());
  if (count != queue_vectors_.size()) {
    return in.fail(
        fmt::format("{} queue vectors, the device has {} queues", count, queue_vectors_.size()));
  }
  std::vector<uint16_t> queue_vectors;
  for (uint32_t i = 0; i < count; ++i) {
    PETREL_TRY_ASSIGN(uint16_t v, read_vector(fmt::format("queue {} msix vector", i)));
    queue_vectors.push_back(v);
  }
  PETREL_TRY(in.expect_end());

  // Apply, undoing the earlier parts when a later one refuses its bytes.
  std::unique_lock lock(mu_);
  const std::vector<std::byte> old_config = config_.save_state();
  PETREL_TRY(config_.restore_state(config_bytes).context("virtio-pci configuration space"));
  const std::vector<std::byte> old_msix = msix_->save_state();
  if (auto r = msix_->restore_state(msix_bytes); !r) {
    (void)config_.restore_state(old_config);
    return std::move(r).context("virtio-pci MSI-X");
  }
  config_vector_ = config_vector;
  queue_vectors_ = queue_vectors;
  lock.unlock();
  if (auto r = core_->apply_state(std::move(core_state)); !r) {
    lock.lock();
    (void)config_.restore_state(old_config);
    (void)msix_->restore_state(old_msix);
    config_vector_ = kNoVector;
    std::fill(queue_vectors_.begin(), queue_vectors_.end(), kNoVector);
    return r;
  }
  return {};
}

}  // namespace petrel::virtio

// VirtioDevices: quiesce, save and restore (virtio_devices.h has the contracts).
//
// State blob (StateWriter): header (kMagic, kVersion), u32 device count, per device:
// bytes id, u32 transport (0 MMIO, 1 PCI), u32 device type, u32 queue count, bytes
// transport state (MMIO: TransportCore::save_state; PCI: PciTransport::save_state); then u8
// has_pci_root and, when set, bytes PciRoot::save_state.
#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

#include "vmm/base/state_codec.h"
#include "vmm/virtio_devices.h"

namespace petrel {

namespace {

constexpr uint32_t kMagic = 0x4f495650;  // "PVIO"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxDevices = 256;
constexpr size_t kMaxId = 64;
constexpr size_t kMaxTransportState = 1 << 20;

uint32_t transport_code(VirtioTransport t) {
  return t == VirtioTransport::kPci ? 1 : 0;
}

std::string_view transport_name(uint32_t code) {
  return code == 1 ? "pci" : code == 0 ? "mmio" : "unknown";
}

// What the loop reports back to quiesce(); shared so that late callbacks stay safe.
struct QuiesceWait {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<bool> idle;
  size_t remaining = 0;
};

}  // namespace

Result<void> VirtioDevices::quiesce(std::chrono::milliseconds limit) {
  if (io_.get_executor().running_in_this_thread()) {
    return Error(ErrorCode::kInternal, "virtio quiesce called on the event-loop thread");
  }
  if (quiesced_) {
    return Error(ErrorCode::kState, "virtio devices are already quiesced");
  }
  std::vector<virtio::TransportCore*> cores;
  for (const Entry& e : entries_) {
    cores.push_back(e.core);
  }
  auto wait = std::make_shared<QuiesceWait>();
  wait->idle.assign(cores.size(), false);
  wait->remaining = cores.size();
  boost::asio::post(io_, [cores, wait] {
    for (size_t i = 0; i < cores.size(); ++i) {
      cores[i]->quiesce([wait, i] {
        std::lock_guard lock(wait->mutex);
        if (!wait->idle[i]) {
          wait->idle[i] = true;
          --wait->remaining;
          wait->cv.notify_all();
        }
      });
    }
  });
  std::unique_lock lock(wait->mutex);
  if (wait->cv.wait_for(lock, limit, [&wait] { return wait->remaining == 0; })) {
    quiesced_ = true;
    return {};
  }
  std::string busy;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (!wait->idle[i]) {
      busy += (busy.empty() ? "" : ", ") + entries_[i].id;
    }
  }
  lock.unlock();
  boost::asio::post(io_, [cores] {
    for (virtio::TransportCore* core : cores) {
      core->unquiesce();
    }
  });
  return Error(ErrorCode::kInternal,
               fmt::format("virtio devices not idle after {} ms: {}", limit.count(), busy));
}

void VirtioDevices::unquiesce() {
  if (!quiesced_.exchange(false)) {
    return;
  }
  std::vector<virtio::TransportCore*> cores;
  for (const Entry& e : entries_) {
    cores.push_back(e.core);
  }
  boost::asio::post(io_, [cores] {
    for (virtio::TransportCore* core : cores) {
      core->unquiesce();
    }
  });
}

Result<std::vector<std::byte>> VirtioDevices::save_state() const {
  if (!quiesced_) {
    return Error(ErrorCode::kState, "virtio state can only be saved while quiesced");
  }
  StateWriter out;
  out.header(kMagic, kVersion);
  out.u32(static_cast<uint32_t>(entries_.size()));
  for (const Entry& e : entries_) {
    StateWriter transport;
    if (e.pci != nullptr) {
      PETREL_TRY(e.pci->save_state(transport).context(e.id));
    } else {
      PETREL_TRY(e.core->save_state(transport).context(e.id));
    }
    out.bytes(std::as_bytes(std::span(e.id.data(), e.id.size())));
    out.u32(transport_code(e.transport));
    out.u32(e.core->device_type());
    out.u32(e.core->num_queues());
    out.bytes(transport.data());
  }
  out.u8(pci_root_ ? 1 : 0);
  if (pci_root_) {
    out.bytes(pci_root_->save_state());
  }
  return std::move(out).take();
}

Result<void> VirtioDevices::restore_state(std::span<const std::byte> state) {
  StateReader in(state, "virtio device state");
  PETREL_TRY(in.expect_header(kMagic, kVersion));
  PETREL_TRY_ASSIGN(uint32_t count, in.u32());
  if (count > kMaxDevices) {
    return in.fail(fmt::format("{} devices (at most {})", count, kMaxDevices));
  }
  // First everything that can be checked without changing anything (the MMIO transports),
  // then the PCI transports (each restores all or nothing), then the MMIO ones, the root last
  // (it reports the restored BARs to the transports, which bind their notify ioeventfds).
  std::vector<std::optional<virtio::TransportCore::SavedState>> parsed;
  std::vector<std::pair<size_t, std::span<const std::byte>>> pci;
  for (uint32_t i = 0; i < count; ++i) {
    PETREL_TRY_ASSIGN(auto raw_id, in.bytes(kMaxId));
    const std::string id(reinterpret_cast<const char*>(raw_id.data()), raw_id.size());
    if (i >= entries_.size()) {
      return in.fail(
          fmt::format("device list differs: saved device {} \"{}\" has no "
                      "counterpart (this VM has {} devices)",
                      i, id, entries_.size()));
    }
    const Entry& e = entries_[i];
    if (id != e.id) {
      return in.fail(fmt::format(
          "device list differs: saved device {} is \"{}\", this VM's is \"{}\"", i, id, e.id));
    }
    PETREL_TRY_ASSIGN(uint32_t transport, in.u32());
    PETREL_TRY_ASSIGN(uint32_t type, in.u32());
    PETREL_TRY_ASSIGN(uint32_t queues, in.u32());
    if (transport != transport_code(e.transport)) {
      return in.fail(fmt::format("device list differs: {} was saved on {}, this VM has it on {}",
                                 id, transport_name(transport),
                                 transport_name(transport_code(e.transport))));
    }
    if (type != e.core->device_type()) {
      return in.fail(
          fmt::format("device list differs: {} was saved as device type {}, this "
                      "VM's is type {}",
                      id, type, e.core->device_type()));
    }
    if (queues != e.core->num_queues()) {
      return in.fail(
          fmt::format("device list differs: {} was saved with {} queues, this VM's "
                      "has {}",
                      id, queues, e.core->num_queues()));
    }
    PETREL_TRY_ASSIGN(auto payload, in.bytes(kMaxTransportState));
    if (e.pci != nullptr) {
      pci.emplace_back(i, payload);
      parsed.emplace_back(std::nullopt);
      continue;
    }
    StateReader sub(payload, fmt::format("virtio device {} state", id));
    PETREL_TRY_ASSIGN(auto saved, e.core->parse_state(sub));
    PETREL_TRY(sub.expect_end());
    parsed.emplace_back(std::move(saved));
  }
  if (count != entries_.size()) {
    return in.fail(
        fmt::format("device list differs: {} devices saved, this VM has {} (first "
                    "missing: {})",
                    count, entries_.size(), entries_[count].id));
  }
  PETREL_TRY_ASSIGN(uint8_t has_root, in.u8());
  if (has_root != (pci_root_ ? 1 : 0)) {
    return in.fail(fmt::format("device list differs: PCI root {} saved, this VM has {}",
                               has_root != 0 ? "was" : "was not", pci_root_ ? "one" : "none"));
  }
  std::span<const std::byte> root_bytes;
  if (pci_root_) {
    PETREL_TRY_ASSIGN(root_bytes, in.bytes(kMaxTransportState));
  }
  PETREL_TRY(in.expect_end());
  for (const auto& [index, payload] : pci) {
    const Entry& e = entries_[index];
    StateReader sub(payload, fmt::format("virtio device {} state", e.id));
    PETREL_TRY(e.pci->restore_state(sub).context(e.id));
    PETREL_TRY(sub.expect_end().context(e.id));
  }
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (parsed[i]) {
      PETREL_TRY(entries_[i].core->apply_state(std::move(*parsed[i])).context(entries_[i].id));
    }
  }
  if (pci_root_) {
    PETREL_TRY(pci_root_->restore_state(root_bytes).context("virtio PCI root"));
  }
  return {};
}

Result<void> VirtioDevices::set_disk_locks(bool locked) const {
  if (!quiesced_) {
    return Error(ErrorCode::kState, "disk locks change hands only while the devices are quiesced");
  }
  for (const auto& disk : disks_) {
    PETREL_TRY(disk.device->set_image_locked(locked));
  }
  return {};
}

}  // namespace petrel

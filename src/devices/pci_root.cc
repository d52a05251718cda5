#include "devices/pci_root.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

constexpr uint32_t kConfigEnable = 1u << 31;
constexpr uint16_t kConfigSpaceSize = 4096;

// State format 1: header, u32 CONFIG_ADDRESS, u32 bitmap of occupied slots (bit n: slot n,
// bit 0 the host bridge), the host bridge's PciConfigSpace state as a byte string.
constexpr uint32_t kStateMagic = 0x52494350;  // "PCIR"
constexpr uint32_t kStateVersion = 1;
constexpr size_t kMaxHostBridgeState = 1024;  // its state is 256 bytes and a few headers

bool valid_width(size_t width) {
  return width == 1 || width == 2 || width == 4;
}

void fill_ones(std::span<std::byte> data) {
  std::fill(data.begin(), data.end(), std::byte{0xff});
}

uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

}  // namespace

// Ports 0xCF8-0xCFF: CONFIG_ADDRESS (dword at 0) and CONFIG_DATA (1, 2 or 4 bytes at 4..7).
class PciRoot::ConfigIo final : public BusDevice {
 public:
  explicit ConfigIo(std::shared_ptr<PciRoot> root) : root_(std::move(root)) {}

  void read(uint64_t offset, std::span<std::byte> data) override {
    if (offset < 4) {
      uint32_t value;
      {
        std::lock_guard lock(root_->mu_);
        value = root_->config_address_;
      }
      for (size_t i = 0; i < data.size(); ++i) {
        data[i] =
            offset + i < 4 ? std::byte((value >> (8 * (offset + i))) & 0xff) : std::byte{0xff};
      }
      return;
    }
    uint32_t address;
    {
      std::lock_guard lock(root_->mu_);
      address = root_->config_address_;
    }
    const uint64_t port = offset - 4;
    if ((address & kConfigEnable) == 0 || !valid_width(data.size()) || port + data.size() > 4) {
      fill_ones(data);
      return;
    }
    root_->config_read((address >> 16) & 0xff, (address >> 11) & 0x1f, (address >> 8) & 0x7,
                       static_cast<uint16_t>((address & 0xfc) + port), data);
  }

  void write(uint64_t offset, std::span<const std::byte> data) override {
    if (offset < 4) {
      // Only a dword write at 0xCF8 sets the address (Linux probes with byte writes).
      if (offset == 0 && data.size() == 4) {
        uint32_t value;
        std::memcpy(&value, data.data(), 4);
        std::lock_guard lock(root_->mu_);
        root_->config_address_ = value & ~uint32_t{3};
      }
      return;
    }
    uint32_t address;
    {
      std::lock_guard lock(root_->mu_);
      address = root_->config_address_;
    }
    const uint64_t port = offset - 4;
    if ((address & kConfigEnable) == 0 || !valid_width(data.size()) || port + data.size() > 4) {
      return;
    }
    root_->config_write((address >> 16) & 0xff, (address >> 11) & 0x1f, (address >> 8) & 0x7,
                        static_cast<uint16_t>((address & 0xfc) + port), data);
  }

 private:
  std::shared_ptr<PciRoot> root_;
};

class PciRoot::Ecam final : public BusDevice {
 public:
  explicit Ecam(std::shared_ptr<PciRoot> root) : root_(std::move(root)) {}

  void read(uint64_t offset, std::span<std::byte> data) override {
    const uint16_t reg = offset & 0xfff;
    if (offset >= kEcamSize || !valid_width(data.size()) || reg + data.size() > kConfigSpaceSize) {
      fill_ones(data);
      return;
    }
    root_->config_read(0, (offset >> 15) & 0x1f, (offset >> 12) & 0x7, reg, data);
  }

  void write(uint64_t offset, std::span<const std::byte> data) override {
    const uint16_t reg = offset & 0xfff;
    if (offset >= kEcamSize || !valid_width(data.size()) || reg + data.size() > kConfigSpaceSize) {
      return;
    }
    root_->config_write(0, (offset >> 15) & 0x1f, (offset >> 12) & 0x7, reg, data);
  }

 private:
  std::shared_ptr<PciRoot> root_;
};

class PciRoot::BarWindow final : public BusDevice {
 public:
  explicit BarWindow(std::shared_ptr<PciRoot> root) : root_(std::move(root)) {}
  void read(uint64_t offset, std::span<std::byte> data) override {
    root_->window_read(offset, data);
  }
  void write(uint64_t offset, std::span<const std::byte> data) override {
    root_->window_write(offset, data);
  }

 private:
  std::shared_ptr<PciRoot> root_;
};

std::shared_ptr<PciRoot> PciRoot::create(GuestAddress window_base, uint64_t window_size) {
  return std::make_shared<PciRoot>(window_base, window_size);
}

PciRoot::PciRoot(GuestAddress window_base, uint64_t window_size)
    : window_base_(window_base.value()),
      window_size_(window_size),
      host_bridge_(PciIds{.vendor_id = 0x8086,
                          .device_id = 0x0d57,
                          .revision = 0,
                          .class_code = 0x060000,
                          .subsystem_vendor_id = 0,
                          .subsystem_id = 0}),
      next_bar_address_(window_base.value()) {}

Result<uint8_t> PciRoot::add_device(std::shared_ptr<PciDevice> device) {
  if (!device) {
    return Error(ErrorCode::kInvalidArgument, "null PCI device");
  }
  std::lock_guard lock(mu_);
  uint8_t slot = 1;
  while (slot < kSlots && slots_[slot].device) {
    ++slot;
  }
  if (slot == kSlots) {
    return Error(ErrorCode::kOutOfRange, "no free PCI slot on bus 0");
  }
  uint64_t next = next_bar_address_;
  std::vector<std::pair<uint8_t, uint64_t>> assigned;
  for (const PciBar& bar : device->bars()) {
    const uint64_t address = align_up(next, bar.size);
    if (address < next || address + bar.size > window_base_ + window_size_ ||
        address + bar.size > (uint64_t{1} << 32)) {
      return Error(ErrorCode::kOutOfRange,
                   fmt::format("PCI BAR window full (BAR {} of {:#x} bytes)", bar.index, bar.size));
    }
    assigned.emplace_back(bar.index, address);
    next = address + bar.size;
  }
  for (const auto& [index, address] : assigned) {
    const uint32_t value = static_cast<uint32_t>(address);
    device->config_write(PciConfigSpace::kBar0 + 4 * index,
                         std::as_bytes(std::span<const uint32_t>(&value, 1)));
  }
  next_bar_address_ = next;
  slots_[slot].device = std::move(device);
  update_mappings_locked(slot);
  return slot;
}

std::shared_ptr<BusDevice> PciRoot::config_io_device() {
  return std::make_shared<ConfigIo>(shared_from_this());
}

std::shared_ptr<BusDevice> PciRoot::ecam_device() {
  return std::make_shared<Ecam>(shared_from_this());
}

std::shared_ptr<BusDevice> PciRoot::bar_window_device() {
  return std::make_shared<BarWindow>(shared_from_this());
}

void PciRoot::config_read(uint8_t bus, uint8_t slot, uint8_t function, uint16_t reg,
                          std::span<std::byte> data) {
  if (bus != 0 || function != 0 || slot >= kSlots) {
    fill_ones(data);
    return;
  }
  std::lock_guard lock(mu_);
  if (slot == 0) {
    host_bridge_.read(reg, data);
  } else if (slots_[slot].device) {
    slots_[slot].device->config_read(reg, data);
  } else {
    fill_ones(data);
  }
}

void PciRoot::config_write(uint8_t bus, uint8_t slot, uint8_t function, uint16_t reg,
                           std::span<const std::byte> data) {
  if (bus != 0 || function != 0 || slot >= kSlots) {
    return;
  }
  std::lock_guard lock(mu_);
  if (slot == 0) {
    host_bridge_.write(reg, data);
  } else if (slots_[slot].device) {
    slots_[slot].device->config_write(reg, data);
    update_mappings_locked(slot);
  }
}

void PciRoot::update_mappings_locked(uint8_t slot) {
  Slot& s = slots_[slot];
  bool changed = false;
  for (const PciBar& bar : s.device->bars()) {
    if (bar.index >= s.mapped.size()) {
      continue;
    }
    std::optional<GuestAddress> now;
    const uint64_t base = bar.address.value();
    if (bar.decoding && base >= window_base_ && bar.size <= window_size_ &&
        base - window_base_ <= window_size_ - bar.size) {
      now = bar.address;
    }
    if (now != s.mapped[bar.index]) {
      s.mapped[bar.index] = now;
      changed = true;
      s.device->bar_mapped(bar.index, now);
    }
  }
  if (!changed) {
    return;
  }
  std::erase_if(mappings_, [slot](const Mapping& m) { return m.slot == slot; });
  for (const PciBar& bar : s.device->bars()) {
    if (bar.index < s.mapped.size() && s.mapped[bar.index]) {
      mappings_.push_back(Mapping{s.mapped[bar.index]->value(), bar.size, slot, bar.index});
    }
  }
  std::stable_sort(mappings_.begin(), mappings_.end(),
                   [](const Mapping& a, const Mapping& b) { return a.slot < b.slot; });
}

std::shared_ptr<PciDevice> PciRoot::resolve(uint64_t offset, uint64_t size, uint8_t* bar,
                                            uint64_t* bar_offset) {
  if (offset >= window_size_ || size > window_size_ - offset) {
    return nullptr;
  }
  const uint64_t addr = window_base_ + offset;
  std::lock_guard lock(mu_);
  for (const Mapping& m : mappings_) {
    if (addr >= m.base && addr - m.base < m.size && size <= m.size - (addr - m.base)) {
      *bar = m.bar;
      *bar_offset = addr - m.base;
      return slots_[m.slot].device;
    }
  }
  return nullptr;
}

void PciRoot::window_read(uint64_t offset, std::span<std::byte> data) {
  uint8_t bar = 0;
  uint64_t bar_offset = 0;
  if (auto device = resolve(offset, data.size(), &bar, &bar_offset)) {
    device->bar_read(bar, bar_offset, data);
    return;
  }
  spdlog::debug("pci: read of {} bytes at {:#x} hits no BAR", data.size(), window_base_ + offset);
  fill_ones(data);
}

void PciRoot::window_write(uint64_t offset, std::span<const std::byte> data) {
  uint8_t bar = 0;
  uint64_t bar_offset = 0;
  if (auto device = resolve(offset, data.size(), &bar, &bar_offset)) {
    device->bar_write(bar, bar_offset, data);
    return;
  }
  spdlog::debug("pci: write of {} bytes at {:#x} hits no BAR", data.size(), window_base_ + offset);
}

std::vector<std::byte> PciRoot::save_state() const {
  std::lock_guard lock(mu_);
  uint32_t occupied = 1;
  for (uint8_t slot = 1; slot < kSlots; ++slot) {
    if (slots_[slot].device) {
      occupied |= uint32_t{1} << slot;
    }
  }
  StateWriter w;
  w.header(kStateMagic, kStateVersion);
  w.u32(config_address_);
  w.u32(occupied);
  w.bytes(host_bridge_.save_state());
  return std::move(w).take();
}

Result<void> PciRoot::restore_state(std::span<const std::byte> bytes) {
  StateReader r(bytes, "PCI root state");
  PETREL_TRY(r.expect_header(kStateMagic, kStateVersion));
  PETREL_TRY_ASSIGN(uint32_t address, r.u32());
  if ((address & 3) != 0) {
    return r.fail(fmt::format("PCI root CONFIG_ADDRESS {:#010x} has bits 1:0 set", address));
  }
  PETREL_TRY_ASSIGN(uint32_t occupied, r.u32());
  PETREL_TRY_ASSIGN(auto bridge, r.bytes(kMaxHostBridgeState).context("PCI root host bridge"));
  PETREL_TRY(r.expect_end());

  std::lock_guard lock(mu_);
  uint32_t ours = 1;
  for (uint8_t slot = 1; slot < kSlots; ++slot) {
    if (slots_[slot].device) {
      ours |= uint32_t{1} << slot;
    }
  }
  if (occupied != ours) {
    return r.fail(
        fmt::format("PCI root slots {:#010x} occupied, this root has {:#010x}", occupied, ours));
  }
  // The last check: on success nothing below can fail.
  PETREL_TRY(host_bridge_.restore_state(bridge).context("PCI root host bridge"));
  config_address_ = address;
  for (uint8_t slot = 1; slot < kSlots; ++slot) {
    if (slots_[slot].device) {
      update_mappings_locked(slot);
    }
  }
  return {};
}

}  // namespace petrel

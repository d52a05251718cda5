#include "devices/pci_config_space.h"

#include <bit>

#include <fmt/format.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

constexpr uint16_t kRevision = 0x08;
constexpr uint16_t kCacheLineSize = 0x0c;
constexpr uint16_t kHeaderType = 0x0e;
constexpr uint16_t kSubsystemVendorId = 0x2c;
constexpr uint16_t kSubsystemId = 0x2e;
constexpr uint8_t kBarCount = 6;
// Section 6.2.2: memory space, bus master, parity error response, SERR# enable, interrupt
// disable. No I/O BARs, so I/O space stays 0.
constexpr uint32_t kStateMagic = 0x47464350;  // "PCFG"
constexpr uint32_t kStateVersion = 1;
// A walk of the capability list stops after this many entries (each takes >= 4 bytes).
constexpr size_t kMaxCapabilities = (PciConfigSpace::kLegacySize - 0x40) / 4;

constexpr uint16_t kCommandWritable = (1 << 1) | (1 << 2) | (1 << 6) | (1 << 8) | (1 << 10);

}  // namespace

PciConfigSpace::PciConfigSpace(const PciIds& ids) {
  store(kVendorId, 2, ids.vendor_id);
  store(kVendorId + 2, 2, ids.device_id);
  store(kRevision, 1, ids.revision);
  store(kRevision + 1, 1, ids.class_code & 0xff);
  store(kRevision + 2, 2, (ids.class_code >> 8) & 0xffff);
  store(kHeaderType, 1, 0);  // type 0, single function
  store(kSubsystemVendorId, 2, ids.subsystem_vendor_id);
  store(kSubsystemId, 2, ids.subsystem_id);
  store(kInterruptPin, 1, 0);

  writable_[kCommand] = std::byte(kCommandWritable & 0xff);
  writable_[kCommand + 1] = std::byte(kCommandWritable >> 8);
  writable_[kCacheLineSize] = std::byte{0xff};
  writable_[kInterruptLine] = std::byte{0xff};
}

Result<void> PciConfigSpace::add_memory_bar(uint8_t index, uint32_t size) {
  if (index >= kBarCount) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("PCI BAR index {} out of range", index));
  }
  if (size < 16 || !std::has_single_bit(size)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("PCI BAR size {:#x} is not a power of two >= 16", size));
  }
  if (bar_sizes_[index] != 0) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("PCI BAR {} added twice", index));
  }
  bar_sizes_[index] = size;
  const uint16_t reg = kBar0 + 4 * index;
  // Bits 3:0 read-only: memory space, 32-bit, not prefetchable (all zero).
  const uint32_t mask = ~(size - 1) & ~uint32_t{0xf};
  for (unsigned i = 0; i < 4; ++i) {
    writable_[reg + i] = std::byte((mask >> (8 * i)) & 0xff);
  }
  store(reg, 4, 0);
  return {};
}

Result<uint8_t> PciConfigSpace::add_capability(uint8_t id, std::span<const std::byte> body,
                                               std::span<const std::byte> writable) {
  if (!writable.empty() && writable.size() != body.size()) {
    return Error(ErrorCode::kInvalidArgument, "capability mask length differs from its body");
  }
  const size_t len = 2 + body.size();
  const size_t offset = next_capability_;
  if (offset + len > kLegacySize) {
    return Error(ErrorCode::kOutOfRange, "PCI capability list is full");
  }
  store(offset, 1, id);
  store(offset + 1, 1, 0);
  for (size_t i = 0; i < body.size(); ++i) {
    bytes_[offset + 2 + i] = body[i];
    writable_[offset + 2 + i] = writable.empty() ? std::byte{0} : writable[i];
  }
  if (last_capability_ == 0) {
    store(kCapabilitiesPointer, 1, offset);
    store(kStatus, 2, load(kStatus, 2) | kStatusCapabilities);
  } else {
    store(last_capability_ + 1, 1, offset);
  }
  last_capability_ = static_cast<uint8_t>(offset);
  next_capability_ = static_cast<uint8_t>(std::min<size_t>((offset + len + 3) & ~size_t{3}, 0xff));
  return static_cast<uint8_t>(offset);
}

void PciConfigSpace::read(uint64_t offset, std::span<std::byte> data) const {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    data[i] = (at >= offset && at < kLegacySize) ? bytes_[at] : std::byte{0};
  }
}

void PciConfigSpace::write(uint64_t offset, std::span<const std::byte> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    if (at < offset || at >= kLegacySize) {
      continue;
    }
    bytes_[at] = (bytes_[at] & ~writable_[at]) | (data[i] & writable_[at]);
  }
}

uint32_t PciConfigSpace::load(uint16_t offset, size_t width) const {
  uint32_t value = 0;
  for (size_t i = 0; i < width && i < 4; ++i) {
    if (offset + i < kLegacySize) {
      value |= std::to_integer<uint32_t>(bytes_[offset + i]) << (8 * i);
    }
  }
  return value;
}

void PciConfigSpace::store(uint16_t offset, size_t width, uint32_t value) {
  for (size_t i = 0; i < width && i < 4; ++i) {
    if (offset + i < kLegacySize) {
      bytes_[offset + i] = std::byte((value >> (8 * i)) & 0xff);
    }
  }
}

std::vector<PciBar> PciConfigSpace::bars() const {
  std::vector<PciBar> out;
  const bool decoding = memory_enabled();
  for (uint8_t i = 0; i < kBarCount; ++i) {
    if (bar_sizes_[i] == 0) {
      continue;
    }
    const uint32_t address = load(kBar0 + 4 * i, 4) & ~(bar_sizes_[i] - 1) & ~uint32_t{0xf};
    out.push_back(PciBar{i, bar_sizes_[i], GuestAddress(address), decoding});
  }
  return out;
}

std::array<std::string, PciConfigSpace::kLegacySize> PciConfigSpace::fixed_fields() const {
  std::array<std::string, kLegacySize> name;
  auto mark = [&](size_t from, size_t len, const std::string& what) {
    for (size_t i = from; i < from + len && i < kLegacySize; ++i) {
      name[i] = what;
    }
  };
  // The whole type-0 header's read-only bits, then names for the fields that matter.
  mark(0, kCapabilitiesStart, "type-0 header");
  mark(kVendorId, 4, "vendor/device ID");
  mark(kCommand, 2, "command");
  mark(kStatus, 2, "status");
  mark(kRevision, 4, "revision/class code");
  mark(kHeaderType, 1, "header type");
  for (uint8_t i = 0; i < kBarCount; ++i) {
    mark(kBar0 + 4 * i, 4, fmt::format("BAR {}", i));
  }
  mark(kSubsystemVendorId, 4, "subsystem IDs");
  mark(kCapabilitiesPointer, 1, "capabilities pointer");
  mark(kInterruptPin, 1, "interrupt pin");
  // This space's own list (built by add_capability, so it ends; bounded all the same).
  size_t at = std::to_integer<size_t>(bytes_[kCapabilitiesPointer]);
  for (size_t n = 0; at != 0 && at + 1 < kLegacySize && n < kMaxCapabilities; ++n) {
    mark(at, 2, fmt::format("capability header at {:#04x}", at));
    at = std::to_integer<size_t>(bytes_[at + 1]);
  }
  return name;
}

std::vector<std::byte> PciConfigSpace::save_state() const {
  StateWriter w;
  w.header(kStateMagic, kStateVersion);
  w.bytes(bytes_);
  return std::move(w).take();
}

Result<void> PciConfigSpace::restore_state(std::span<const std::byte> bytes) {
  StateReader r(bytes, "PCI config space state");
  PETREL_TRY(r.expect_header(kStateMagic, kStateVersion));
  const size_t space_at = r.offset();
  PETREL_TRY_ASSIGN(auto space, r.bytes(kLegacySize).context("PCI config space bytes"));
  if (space.size() != kLegacySize) {
    return r.fail_at(space_at, fmt::format("PCI config space is {} bytes, expected {}",
                                           space.size(), kLegacySize));
  }
  PETREL_TRY(r.expect_end());
  const auto fixed = fixed_fields();
  for (size_t i = 0; i < kLegacySize; ++i) {
    if (fixed[i].empty()) {
      continue;
    }
    // Bits the guest may write are free (command bits, a BAR's address bits, ...).
    const std::byte keep = ~writable_[i];
    if ((space[i] & keep) != (bytes_[i] & keep)) {
      return r.fail_at(space_at + 4 + i,
                       fmt::format("PCI config space {}: byte {:#04x} is {:#04x}, this device has "
                                   "{:#04x} in its fixed bits {:#04x}",
                                   fixed[i], i, std::to_integer<unsigned>(space[i]),
                                   std::to_integer<unsigned>(bytes_[i] & keep),
                                   std::to_integer<unsigned>(keep)));
    }
  }
  std::copy(space.begin(), space.end(), bytes_.begin());
  return {};
}

}  // namespace petrel

#include "devices/msix.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

// State format 1: header, u8 enabled (0/1), u8 function masked (0/1), u32 vector count, then
// per vector u64 message address, u32 message data, u8 masked (0/1), u8 pending (0/1).
constexpr uint32_t kStateMagic = 0x5849534d;  // "MSIX"
constexpr uint32_t kStateVersion = 1;

Result<bool> read_bool(StateReader& r, std::string_view field) {
  PETREL_TRY_ASSIGN(uint8_t v, r.u8());
  if (v > 1) {
    return r.fail(fmt::format("MSI-X {} is {}, expected 0 or 1", field, v));
  }
  return v == 1;
}

void put_le(std::vector<std::byte>& out, size_t at, uint32_t value, size_t width) {
  for (size_t i = 0; i < width; ++i) {
    out[at + i] = std::byte((value >> (8 * i)) & 0xff);
  }
}

}  // namespace

Result<std::unique_ptr<Msix>> Msix::create(MsiController& controller, uint16_t vectors) {
  if (vectors == 0 || vectors > kMaxVectors) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("MSI-X table of {} vectors", vectors));
  }
  std::vector<Entry> entries(vectors);
  for (Entry& e : entries) {
    PETREL_TRY_ASSIGN(e.vector, controller.allocate_vector());
  }
  return std::make_unique<Msix>(PassKey{}, std::move(entries));
}

std::vector<std::byte> Msix::capability_body(uint8_t table_bar, uint32_t table_offset,
                                             uint8_t pba_bar, uint32_t pba_offset) const {
  std::vector<std::byte> body(10);
  put_le(body, 0, static_cast<uint32_t>(vectors_.size() - 1), 2);
  put_le(body, 2, (table_offset & ~uint32_t{7}) | (table_bar & 7), 4);
  put_le(body, 6, (pba_offset & ~uint32_t{7}) | (pba_bar & 7), 4);
  return body;
}

std::vector<std::byte> Msix::capability_writable() {
  std::vector<std::byte> mask(10);
  mask[1] = std::byte((kControlEnable | kControlFunctionMask) >> 8);
  return mask;
}

void Msix::set_message_control(uint16_t control) {
  std::lock_guard lock(mu_);
  enabled_ = (control & kControlEnable) != 0;
  function_masked_ = (control & kControlFunctionMask) != 0;
  for (Entry& e : vectors_) {
    refresh_locked(e);
  }
}

bool Msix::enabled() const {
  std::lock_guard lock(mu_);
  return enabled_;
}

uint8_t Msix::table_byte(uint64_t offset) const {
  const Entry& e = vectors_[offset / kEntrySize];
  const unsigned at = offset % kEntrySize;
  if (at < 8) {
    return (e.message.address >> (8 * at)) & 0xff;
  }
  if (at < 12) {
    return (e.message.data >> (8 * (at - 8))) & 0xff;
  }
  return at == 12 && e.masked ? 1 : 0;
}

void Msix::set_table_byte(uint64_t offset, uint8_t value) {
  Entry& e = vectors_[offset / kEntrySize];
  const unsigned at = offset % kEntrySize;
  if (at < 8) {
    e.message.address =
        (e.message.address & ~(uint64_t{0xff} << (8 * at))) | (uint64_t{value} << (8 * at));
  } else if (at < 12) {
    const unsigned shift = 8 * (at - 8);
    e.message.data = (e.message.data & ~(uint32_t{0xff} << shift)) | (uint32_t{value} << shift);
  } else if (at == 12) {
    e.masked = (value & 1) != 0;  // vector control: bit 0 mask, the rest reserved
  }
}

void Msix::read_table(uint64_t offset, std::span<std::byte> data) const {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    data[i] = at >= offset && at < table_bytes() ? std::byte{table_byte(at)} : std::byte{0};
  }
}

void Msix::write_table(uint64_t offset, std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  std::optional<uint64_t> first;
  std::optional<uint64_t> last;
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    if (at < offset || at >= table_bytes()) {
      continue;
    }
    set_table_byte(at, std::to_integer<uint8_t>(data[i]));
    if (!first) {
      first = at / kEntrySize;
    }
    last = at / kEntrySize;
  }
  if (first) {
    for (uint64_t v = *first; v <= *last; ++v) {
      refresh_locked(vectors_[v]);
    }
  }
}

void Msix::read_pba(uint64_t offset, std::span<std::byte> data) const {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    uint8_t byte = 0;
    if (at >= offset && at < pba_bytes()) {
      for (unsigned bit = 0; bit < 8; ++bit) {
        const uint64_t v = at * 8 + bit;
        if (v < vectors_.size() && vectors_[v].pending) {
          byte |= 1u << bit;
        }
      }
    }
    data[i] = std::byte{byte};
  }
}

bool Msix::trigger(uint16_t vector) {
  std::lock_guard lock(mu_);
  if (!enabled_ || vector >= vectors_.size()) {
    return false;
  }
  Entry& e = vectors_[vector];
  if (!deliverable_locked(e)) {
    e.pending = true;
    return true;
  }
  fire_locked(e);
  return true;
}

bool Msix::pending(uint16_t vector) const {
  std::lock_guard lock(mu_);
  return vector < vectors_.size() && vectors_[vector].pending;
}

std::vector<std::byte> Msix::save_state() const {
  std::lock_guard lock(mu_);
  StateWriter w;
  w.header(kStateMagic, kStateVersion);
  w.u8(enabled_ ? 1 : 0);
  w.u8(function_masked_ ? 1 : 0);
  w.u32(static_cast<uint32_t>(vectors_.size()));
  for (const Entry& e : vectors_) {
    w.u64(e.message.address);
    w.u32(e.message.data);
    w.u8(e.masked ? 1 : 0);
    w.u8(e.pending ? 1 : 0);
  }
  return std::move(w).take();
}

Result<void> Msix::restore_state(std::span<const std::byte> bytes) {
  struct Saved {
    MsiMessage message;
    bool masked;
    bool pending;
  };
  StateReader r(bytes, "MSI-X state");
  PETREL_TRY(r.expect_header(kStateMagic, kStateVersion));
  PETREL_TRY_ASSIGN(bool enabled, read_bool(r, "enable"));
  PETREL_TRY_ASSIGN(bool function_masked, read_bool(r, "function mask"));
  PETREL_TRY_ASSIGN(uint32_t count, r.u32());
  if (count != vectors_.size()) {
    return r.fail(
        fmt::format("MSI-X table size {} differs from this device's {}", count, vectors_.size()));
  }
  std::vector<Saved> saved;
  saved.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    Saved s{};
    PETREL_TRY_ASSIGN(s.message.address, r.u64());
    PETREL_TRY_ASSIGN(s.message.data, r.u32());
    PETREL_TRY_ASSIGN(s.masked, read_bool(r, fmt::format("entry {} mask", i)));
    PETREL_TRY_ASSIGN(s.pending, read_bool(r, fmt::format("entry {} pending bit", i)));
    saved.push_back(s);
  }
  PETREL_TRY(r.expect_end());

  std::lock_guard lock(mu_);
  enabled_ = enabled;
  function_masked_ = function_masked;
  for (size_t i = 0; i < saved.size(); ++i) {
    vectors_[i].message = saved[i].message;
    vectors_[i].masked = saved[i].masked;
    vectors_[i].pending = saved[i].pending;
  }
  for (Entry& e : vectors_) {
    refresh_locked(e);
  }
  return {};
}

bool Msix::deliverable_locked(const Entry& e) const {
  return enabled_ && !function_masked_ && !e.masked;
}

void Msix::refresh_locked(Entry& e) {
  if (!deliverable_locked(e)) {
    return;
  }
  if (e.installed != e.message) {
    if (auto r = e.vector->set_route(e.message); !r) {
      spdlog::error("msix: route update failed: {}", r.error().to_string());
      return;
    }
    e.installed = e.message;
  }
  if (e.pending) {
    e.pending = false;
    fire_locked(e);
  }
}

void Msix::fire_locked(Entry& e) {
  if (e.installed != e.message) {
    if (auto r = e.vector->set_route(e.message); !r) {
      spdlog::error("msix: route update failed: {}", r.error().to_string());
      return;
    }
    e.installed = e.message;
  }
  if (auto r = e.vector->trigger(); !r) {
    spdlog::error("msix: delivery failed: {}", r.error().to_string());
  }
}

}  // namespace petrel

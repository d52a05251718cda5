#include "vmm/base/state_codec.h"

#include <limits>

#include <fmt/format.h>

namespace petrel {

void put_le(std::vector<std::byte>& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) {
    out.push_back(static_cast<std::byte>(value >> (8 * i)));
  }
}

uint64_t get_le(const std::byte* p, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) {
    value |= std::to_integer<uint64_t>(p[i]) << (8 * i);
  }
  return value;
}

void StateWriter::u8(uint8_t v) {
  out_.push_back(static_cast<std::byte>(v));
}
void StateWriter::u32(uint32_t v) {
  put_le(out_, v, 4);
}
void StateWriter::u64(uint64_t v) {
  put_le(out_, v, 8);
}

void StateWriter::bytes(std::span<const std::byte> data) {
  u32(static_cast<uint32_t>(data.size()));
  out_.insert(out_.end(), data.begin(), data.end());
}

Error StateReader::fail_at(size_t offset, std::string_view message) const {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{} at offset {}: {}", what_, offset, message));
}

std::string StateReader::fmt_size(std::string_view field, size_t got, size_t want) {
  return fmt::format("{} is {} bytes, expected {}", field, got, want);
}

Result<std::span<const std::byte>> StateReader::take(size_t n, std::string_view what) {
  if (n > remaining()) {
    return fail(fmt::format("truncated: {} needs {} bytes, {} left", what, n, remaining()));
  }
  auto out = in_.subspan(pos_, n);
  pos_ += n;
  return out;
}

Result<uint8_t> StateReader::u8() {
  PETREL_TRY_ASSIGN(auto b, take(1, "a u8"));
  return std::to_integer<uint8_t>(b[0]);
}

Result<uint32_t> StateReader::u32() {
  PETREL_TRY_ASSIGN(auto b, take(4, "a u32"));
  return static_cast<uint32_t>(get_le(b.data(), 4));
}

Result<uint64_t> StateReader::u64() {
  PETREL_TRY_ASSIGN(auto b, take(8, "a u64"));
  return get_le(b.data(), 8);
}

Result<std::span<const std::byte>> StateReader::bytes(size_t max_len) {
  const size_t at = pos_;
  PETREL_TRY_ASSIGN(uint32_t len, u32());
  if (len > max_len || len > remaining()) {
    const size_t left = remaining();
    pos_ = at;
    return fail(len > max_len
                    ? fmt::format("byte string of {} bytes, at most {} allowed", len, max_len)
                    : fmt::format("truncated: byte string of {} bytes, {} left", len, left));
  }
  return take(len, "a byte string");
}

Result<std::vector<StateRecord>> StateReader::records(uint32_t max_count, size_t max_payload) {
  PETREL_TRY_ASSIGN(uint32_t count, u32());
  // Each record takes at least 8 bytes (tag and length): a larger count cannot be honest.
  if (count > max_count || count > remaining() / 8) {
    return fail(fmt::format("{} records, at most {} allowed ({} bytes left)", count, max_count,
                            remaining()));
  }
  std::vector<StateRecord> out;
  out.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    const size_t at = pos_;
    PETREL_TRY_ASSIGN(uint32_t tag, u32());
    for (const auto& seen : out) {
      if (seen.tag == tag) {
        return fail_at(at, fmt::format("record tag {} appears twice", tag));
      }
    }
    PETREL_TRY_ASSIGN(auto payload, bytes(max_payload));
    out.push_back(StateRecord{tag, payload, pos_ - payload.size()});
  }
  return out;
}

Result<void> StateReader::expect_header(uint32_t magic, uint32_t version) {
  PETREL_TRY_ASSIGN(uint32_t got_magic, u32());
  if (got_magic != magic) {
    return fail(fmt::format("bad magic {:#010x} (expected {:#010x})", got_magic, magic));
  }
  PETREL_TRY_ASSIGN(uint32_t got_version, u32());
  if (got_version != version) {
    return fail(
        fmt::format("unsupported format version {} (this petrel reads {})", got_version, version));
  }
  return {};
}

Result<void> StateReader::expect_end() const {
  if (remaining() != 0) {
    return fail(fmt::format("{} trailing bytes", remaining()));
  }
  return {};
}

}  // namespace petrel

// StateWriter / StateReader: the byte encoding of saved machine state (snapshot files,
// migration streams). Integers are little-endian; a byte string is a u32 length and the bytes.
// A state blob starts with a header (u32 magic, u32 format version) and is read with a
// StateReader that checks every read against what is left: the input is untrusted (a file
// from disk, bytes from the network), so a short, oversized or trailing-garbage input is an
// ErrorCode::kInvalidArgument naming what was being read and at which offset, never UB.
//
// Fixed-size KVM structs (kvm_regs, kvm_lapic_state, ...) are stored as their raw bytes with
// their size (raw()/read_raw()); their layout is the x86-64 KVM ABI, so state moves between
// x86-64 hosts only.
//
// Not thread-safe; a reader borrows its input, which must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "vmm/base/result.h"

namespace petrel {

// Little-endian integers of `bytes` bytes (1..8): the one encoding every petrel state and
// snapshot format uses. get_le reads exactly `bytes` bytes at `p`: the caller checked them.
void put_le(std::vector<std::byte>& out, uint64_t value, size_t bytes);
uint64_t get_le(const std::byte* p, size_t bytes);

// One tagged record of a state blob: a u32 tag and a byte string. `offset` is where the
// payload starts in the blob (for error messages).
struct StateRecord {
  uint32_t tag;
  std::span<const std::byte> payload;
  size_t offset;
};

class StateWriter {
 public:
  void u8(uint8_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  // A u32 length and the bytes (at most 4 GiB - 1).
  void bytes(std::span<const std::byte> data);
  template <typename T>
  void raw(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes(std::as_bytes(std::span(&v, 1)));
  }
  void header(uint32_t magic, uint32_t version) {
    u32(magic);
    u32(version);
  }
  // A record (see StateReader::records; the caller writes the u32 record count first).
  void record(uint32_t tag, std::span<const std::byte> payload) {
    u32(tag);
    bytes(payload);
  }
  template <typename T>
  void raw_record(uint32_t tag, const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    record(tag, std::as_bytes(std::span(&v, 1)));
  }

  const std::vector<std::byte>& data() const { return out_; }
  std::vector<std::byte> take() && { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class StateReader {
 public:
  // `what` names the blob in error messages ("vCPU state").
  StateReader(std::span<const std::byte> in, std::string what) : in_(in), what_(std::move(what)) {}

  Result<uint8_t> u8();
  Result<uint32_t> u32();
  Result<uint64_t> u64();
  // A length-prefixed byte string; refused when its length exceeds `max_len` or the input.
  Result<std::span<const std::byte>> bytes(size_t max_len);
  // A byte string that must be exactly sizeof(T) long, copied into a T; `field` names it.
  template <typename T>
  Result<T> read_raw(std::string_view field) {
    static_assert(std::is_trivially_copyable_v<T>);
    PETREL_TRY_ASSIGN(auto data, bytes(sizeof(T)));
    if (data.size() != sizeof(T)) {
      return fail(fmt_size(field, data.size(), sizeof(T)));
    }
    T out;
    std::memcpy(&out, data.data(), sizeof(T));
    return out;
  }
  // A u32 record count (at most `max_count`) and that many records, each a u32 tag and a byte
  // string of at most `max_payload` bytes; refuses a tag that appears twice.
  Result<std::vector<StateRecord>> records(uint32_t max_count, size_t max_payload);
  // The payload of `rec` as a T: refused unless it is exactly sizeof(T) bytes.
  template <typename T>
  Result<T> fixed(const StateRecord& rec, std::string_view field) const {
    static_assert(std::is_trivially_copyable_v<T>);
    if (rec.payload.size() != sizeof(T)) {
      return fail_at(rec.offset, fmt_size(field, rec.payload.size(), sizeof(T)));
    }
    T out;
    std::memcpy(&out, rec.payload.data(), sizeof(T));
    return out;
  }
  // Reads the header; refuses another magic or a version other than `version`.
  Result<void> expect_header(uint32_t magic, uint32_t version);
  // Refuses unread bytes at the end.
  Result<void> expect_end() const;

  size_t offset() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }
  // An ErrorCode::kInvalidArgument "<what> at offset <n>: <message>".
  Error fail(std::string_view message) const { return fail_at(pos_, message); }
  Error fail_at(size_t offset, std::string_view message) const;

 private:
  static std::string fmt_size(std::string_view field, size_t got, size_t want);
  Result<std::span<const std::byte>> take(size_t n, std::string_view what);

  std::span<const std::byte> in_;
  std::string what_;
  size_t pos_ = 0;
};

}  // namespace petrel

// GuestAddress: a guest-physical address, kept apart from host pointers and plain sizes.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>

namespace petrel {

class GuestAddress {
 public:
  constexpr GuestAddress() = default;
  constexpr explicit GuestAddress(uint64_t value) : value_(value) {}

  constexpr uint64_t value() const { return value_; }

  // nullopt when the sum wraps past 2^64.
  constexpr std::optional<GuestAddress> checked_add(uint64_t offset) const {
    if (offset > UINT64_MAX - value_) {
      return std::nullopt;
    }
    return GuestAddress(value_ + offset);
  }
  // Unchecked: only for offsets the caller has bounded.
  constexpr GuestAddress operator+(uint64_t offset) const { return GuestAddress(value_ + offset); }
  constexpr uint64_t operator-(GuestAddress other) const { return value_ - other.value_; }

  constexpr auto operator<=>(const GuestAddress&) const = default;

 private:
  uint64_t value_ = 0;
};

}  // namespace petrel

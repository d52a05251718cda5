// MacAddress: a 48-bit Ethernet address (IEEE 802), as the virtio-net config space carries it
// (virtio 1.2 section 5.1.4: `mac`, in transmission order).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "vmm/base/result.h"

namespace petrel::virtio {

class MacAddress {
 public:
  static constexpr size_t kSize = 6;

  constexpr MacAddress() = default;
  constexpr explicit MacAddress(std::array<uint8_t, kSize> bytes) : bytes_(bytes) {}

  // "52:54:00:12:34:56" (also accepts '-' separators; hex digits of either case; exactly six
  // two-digit groups).
  static Result<MacAddress> parse(std::string_view text);
  // A locally administered unicast address that is the same every time for the same VM name
  // and NIC index: 02:xx:xx:xx:xx:xx from a hash of both (bit 1 of the first octet set, bit 0,
  // the group bit, clear).
  static MacAddress generate(std::string_view vm_name, unsigned index);

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  bool is_multicast() const { return (bytes_[0] & 0x01) != 0; }
  bool is_locally_administered() const { return (bytes_[0] & 0x02) != 0; }
  bool is_zero() const { return bytes_ == std::array<uint8_t, kSize>{}; }
  // Lower-case, colon-separated.
  std::string to_string() const;

  friend bool operator==(const MacAddress&, const MacAddress&) = default;

 private:
  std::array<uint8_t, kSize> bytes_{};
};

}  // namespace petrel::virtio

#include "virtio/mac_address.h"

#include <fmt/format.h>

namespace petrel::virtio {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// FNV-1a, 64 bits: stable across builds and platforms (std::hash is not).
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325;
constexpr uint64_t kFnvPrime = 0x100000001b3;

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= kFnvPrime;
  }
  return h;
}

}  // namespace

Result<MacAddress> MacAddress::parse(std::string_view text) {
  // "xx:xx:xx:xx:xx:xx": 6 groups of 2 digits, 5 separators.
  constexpr size_t kTextLen = kSize * 3 - 1;
  auto bad = [&] {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("invalid MAC address '{}' (expected xx:xx:xx:xx:xx:xx)", text));
  };
  if (text.size() != kTextLen) {
    return bad();
  }
  const char sep = text[2];
  if (sep != ':' && sep != '-') {
    return bad();
  }
  std::array<uint8_t, kSize> bytes{};
  for (size_t i = 0; i < kSize; ++i) {
    const size_t pos = i * 3;
    if (i > 0 && text[pos - 1] != sep) {
      return bad();
    }
    const int hi = hex_value(text[pos]);
    const int lo = hex_value(text[pos + 1]);
    if (hi < 0 || lo < 0) {
      return bad();
    }
    bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return MacAddress(bytes);
}

MacAddress MacAddress::generate(std::string_view vm_name, unsigned index) {
  uint64_t h = fnv1a(kFnvOffset, "petrel-net");
  h = fnv1a(h, vm_name);
  h = fnv1a(h, std::string_view("\0", 1));
  h = fnv1a(h, std::to_string(index));
  std::array<uint8_t, kSize> bytes{};
  bytes[0] = 0x02;  // locally administered, unicast
  for (size_t i = 1; i < kSize; ++i) {
    bytes[i] = static_cast<uint8_t>(h >> (8 * (i - 1)));
  }
  return MacAddress(bytes);
}

std::string MacAddress::to_string() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes_[0], bytes_[1], bytes_[2],
                     bytes_[3], bytes_[4], bytes_[5]);
}

}  // namespace petrel::virtio

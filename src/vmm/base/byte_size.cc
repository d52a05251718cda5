#include "vmm/base/byte_size.h"

#include <array>

namespace petrel {
namespace {

struct SizeUnit {
  std::string_view suffix;  // lower case for parsing
  uint64_t bytes;
};

constexpr std::array<SizeUnit, 10> kSizeUnits{{
    {"", 1},
    {"b", 1},
    {"k", 1ull << 10},
    {"kib", 1ull << 10},
    {"m", 1ull << 20},
    {"mib", 1ull << 20},
    {"g", 1ull << 30},
    {"gib", 1ull << 30},
    {"t", 1ull << 40},
    {"tib", 1ull << 40},
}};

// Largest first; format_byte_size picks the first that divides exactly.
constexpr std::array<SizeUnit, 4> kFormatUnits{{
    {"T", 1ull << 40},
    {"G", 1ull << 30},
    {"M", 1ull << 20},
    {"K", 1ull << 10},
}};

char ascii_lower(char ch) {
  return (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch;
}

}  // namespace

Result<uint64_t> parse_byte_size(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  std::string suffix;
  for (char ch : text.substr(digits)) {
    suffix += ascii_lower(ch);
  }
  const SizeUnit* unit = nullptr;
  for (const auto& candidate : kSizeUnits) {
    if (candidate.suffix == suffix) {
      unit = &candidate;
    }
  }
  if (digits == 0 || unit == nullptr) {
    return Error(ErrorCode::kInvalidArgument,
                 "expected digits with an optional K, M, G or T suffix, e.g. 256M");
  }
  uint64_t value = 0;
  bool overflow = false;
  for (char ch : text.substr(0, digits)) {
    overflow = overflow || __builtin_mul_overflow(value, 10, &value) ||
               __builtin_add_overflow(value, static_cast<uint64_t>(ch - '0'), &value);
  }
  overflow = overflow || __builtin_mul_overflow(value, unit->bytes, &value);
  if (overflow) {
    return Error(ErrorCode::kInvalidArgument, "larger than 2^64 - 1 bytes");
  }
  return value;
}

std::string format_byte_size(uint64_t bytes) {
  for (const auto& unit : kFormatUnits) {
    if (bytes != 0 && bytes % unit.bytes == 0) {
      return std::to_string(bytes / unit.bytes) + std::string(unit.suffix);
    }
  }
  return std::to_string(bytes);
}

}  // namespace petrel

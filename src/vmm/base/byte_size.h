// Byte sizes as operators write them: "256M", "2GiB", "1048576". Shared by petrel's config and
// command line and by petrelctl, so both read the same sizes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vmm/base/result.h"

namespace petrel {

// Decimal digits with an optional binary suffix K, M, G, T (also KiB, MiB, GiB, TiB, or B for
// bytes; case-insensitive). Junk, an empty string and values above UINT64_MAX are refused
// with kInvalidArgument; the message says why without repeating `text` (callers name it).
Result<uint64_t> parse_byte_size(std::string_view text);

// The shortest exact form parse_byte_size reads back: 256 MiB -> "256M", 4097 -> "4097".
std::string format_byte_size(uint64_t bytes);

}  // namespace petrel

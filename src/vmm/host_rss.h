// The resident set size of the petrel process, from /proc/self/statm (proc(5): the second
// field, in pages). Includes the guest RAM the guest has touched.
#pragma once

#include <cstdint>
#include <string_view>

#include "vmm/base/result.h"

namespace petrel {

// Bytes. Any thread.
Result<uint64_t> host_rss_bytes();

// Parses statm text: its second field (resident pages) times `page_size` bytes.
Result<uint64_t> parse_statm_rss(std::string_view statm, uint64_t page_size);

}  // namespace petrel

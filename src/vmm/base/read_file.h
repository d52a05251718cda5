// Reading a whole file (a kernel, an initrd) into memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "vmm/base/result.h"

namespace petrel {

// Refuses anything but a regular file, and files over `max_bytes`.
Result<std::vector<std::byte>> read_file(const std::filesystem::path& path, uint64_t max_bytes);

}  // namespace petrel

// Writing the boot information petrel hands to its own test guests (guest_abi.h,
// struct petrel_boot_info) and the kernel command line.
#pragma once

#include <cstdint>
#include <string_view>

#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"

namespace petrel {

struct BootInfoParams {
  uint32_t vcpus;
  bool pvm_native;
  GuestAddress vif_page;  // meaningful when pvm_native
  std::string_view cmdline;
};

// Writes `cmdline` and its NUL at layout::kCmdline; refuses more than `max_len` bytes (the
// kernel's limit, without the NUL) or more than the space petrel reserves for it.
Result<void> write_cmdline(const GuestMemory& mem, std::string_view cmdline, uint32_t max_len);

// Writes the cmdline at layout::kCmdline and the boot info at layout::kBootInfo.
Result<void> write_boot_info(const GuestMemory& mem, const BootInfoParams& params);

}  // namespace petrel

#include "vmm/boot_info.h"

#include <algorithm>

#include <fmt/format.h>

#include "vmm/guest_abi.h"
#include "vmm/layout.h"

namespace petrel {

Result<void> write_cmdline(const GuestMemory& mem, std::string_view cmdline, uint32_t max_len) {
  uint64_t limit = std::min<uint64_t>(max_len, layout::kCmdlineMax - 1);
  if (cmdline.size() > limit) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("the kernel command line is {} bytes; this kernel takes at most {}",
                             cmdline.size(), limit));
  }
  PETREL_TRY(mem.write(layout::kCmdline, std::as_bytes(std::span(cmdline))));
  return mem.write_obj(layout::kCmdline + cmdline.size(), '\0');
}

Result<void> write_boot_info(const GuestMemory& mem, const BootInfoParams& params) {
  PETREL_TRY(write_cmdline(mem, params.cmdline, layout::kCmdlineMax - 1));

  petrel_boot_info info{};
  info.magic = PETREL_BOOT_INFO_MAGIC;
  info.version = PETREL_BOOT_INFO_VERSION;
  info.flags = params.pvm_native ? PETREL_BOOT_INFO_FLAG_PVM_NATIVE : 0;
  info.vcpus = params.vcpus;
  info.mem_size = mem.total_size();
  info.vif_page = params.pvm_native ? params.vif_page.value() : 0;
  info.cmdline_addr = layout::kCmdline.value();
  info.cmdline_len = static_cast<uint32_t>(params.cmdline.size());
  const auto& regions = mem.regions();
  info.nr_mem_ranges =
      static_cast<uint32_t>(std::min<size_t>(regions.size(), PETREL_BOOT_INFO_MAX_RANGES));
  for (uint32_t i = 0; i < info.nr_mem_ranges; ++i) {
    info.mem[i] = {regions[i].start().value(), regions[i].size()};
  }
  return mem.write_obj(layout::kBootInfo, info);
}

}  // namespace petrel

#include "vmm/linux_boot.h"

#include <cstring>

#include <fmt/format.h>

#include "vmm/e820.h"
#include "vmm/layout.h"

namespace petrel {

namespace {

constexpr uint16_t kBootFlag = 0xaa55;
constexpr uint32_t kHeaderMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kMinProtocol = 0x020c;      // 2.12: xloadflags, 64-bit entry
constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint64_t kEntry64Offset = 0x200;
constexpr uint8_t kLoaderTypeUndefined = 0xff;
constexpr uint32_t kDefaultCmdlineMax = 2047;  // COMMAND_LINE_SIZE (2048) - 1 on x86
constexpr uint64_t kPage = GuestMemory::kPageSize;

Error bad_image(std::string msg) {
  return Error(ErrorCode::kInvalidArgument, std::move(msg));
}

}  // namespace

bool is_bzimage(std::span<const std::byte> image) {
  if (image.size() < kSetupHeaderOffset + sizeof(setup_header)) {
    return false;
  }
  setup_header hdr;
  std::memcpy(&hdr, image.data() + kSetupHeaderOffset, sizeof(hdr));
  return hdr.boot_flag == kBootFlag && hdr.header == kHeaderMagic;
}

Result<LoadedBzImage> load_bzimage(const GuestMemory& mem, std::span<const std::byte> image) {
  if (!is_bzimage(image)) {
    return bad_image("not a bzImage (no 0xAA55/HdrS signature)");
  }
  LoadedBzImage out{};
  std::memcpy(&out.header, image.data() + kSetupHeaderOffset, sizeof(out.header));
  const setup_header& hdr = out.header;
  if (hdr.version < kMinProtocol) {
    return bad_image(
        fmt::format("bzImage boot protocol {}.{:02} is older than 2.12 (no 64-bit entry point)",
                    hdr.version >> 8, hdr.version & 0xff));
  }
  if ((hdr.xloadflags & XLF_KERNEL_64) == 0) {
    return bad_image("bzImage has no 64-bit entry point (XLF_KERNEL_64 clear)");
  }
  // boot.rst: "If this field is 0, the real value is 4."
  uint64_t setup_sects = hdr.setup_sects == 0 ? 4 : hdr.setup_sects;
  uint64_t kernel_offset = (setup_sects + 1) * 512;
  if (kernel_offset >= image.size()) {
    return bad_image(fmt::format("bzImage is truncated: {} bytes, setup alone is {}", image.size(),
                                 kernel_offset));
  }
  if (hdr.syssize != 0 && uint64_t{hdr.syssize} * 16 > image.size() - kernel_offset) {
    return bad_image(fmt::format("bzImage is truncated: header says {} kernel bytes, file has {}",
                                 uint64_t{hdr.syssize} * 16, image.size() - kernel_offset));
  }
  auto kernel = image.subspan(kernel_offset);
  auto dest = mem.slice_mut(layout::kKernelMin, kernel.size());
  if (!dest) {
    return Error(
        ErrorCode::kOutOfRange,
        fmt::format("the {}-byte kernel does not fit in guest memory at 1 MiB", kernel.size()));
  }
  // boot.rst, "init_size": the kernel decompresses itself to its runtime start,
  // align_up(max(load address, pref_address), kernel_alignment) for a relocatable kernel,
  // else pref_address, and needs init_size bytes from there.
  uint64_t runtime_start = hdr.pref_address;
  if (hdr.relocatable_kernel != 0) {
    uint64_t align = hdr.kernel_alignment;
    if (align == 0 || (align & (align - 1)) != 0 || align > (1ull << 30)) {
      return bad_image(fmt::format("bzImage kernel_alignment {:#x} is not a power of two", align));
    }
    uint64_t base = std::max<uint64_t>(layout::kKernelMin.value(), hdr.pref_address);
    if (base > UINT64_MAX - align) {
      return bad_image(fmt::format("bzImage pref_address {:#x} is out of range", base));
    }
    runtime_start = (base + align - 1) & ~(align - 1);
  }
  if (!mem.slice(GuestAddress(runtime_start), hdr.init_size)) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("the kernel needs {} bytes (init_size) from {:#x}; that does not "
                             "fit in guest memory",
                             hdr.init_size, runtime_start));
  }
  std::memcpy(dest->data(), kernel.data(), kernel.size());
  out.entry = layout::kKernelMin + kEntry64Offset;
  out.end =
      std::max(layout::kKernelMin + kernel.size(), GuestAddress(runtime_start) + hdr.init_size);
  return out;
}

uint32_t linux_cmdline_max(const std::optional<setup_header>& header) {
  if (header && header->version >= 0x0206 && header->cmdline_size > 0) {
    return header->cmdline_size;
  }
  return header ? 255 : kDefaultCmdlineMax;
}

Result<InitrdLocation> load_initrd(const GuestMemory& mem, std::span<const std::byte> initrd,
                                   GuestAddress min_start, uint64_t max_end) {
  if (initrd.empty()) {
    return Error(ErrorCode::kInvalidArgument, "the initrd is empty");
  }
  const auto& low = mem.regions().front();
  uint64_t end = std::min(low.end().value(), max_end);
  uint64_t size = initrd.size();
  uint64_t start = end >= size ? (end - size) & ~(kPage - 1) : 0;
  uint64_t min = (min_start.value() + kPage - 1) & ~(kPage - 1);
  if (end < size || start < min) {
    return Error(ErrorCode::kOutOfRange,
                 fmt::format("the initrd ({} bytes) does not fit in guest memory between the "
                             "kernel's end {:#x} and {:#x}",
                             size, min, end));
  }
  PETREL_TRY(mem.write(GuestAddress(start), initrd));
  return InitrdLocation{GuestAddress(start), size};
}

Result<void> write_zero_page(const GuestMemory& mem, const ZeroPageParams& params) {
  boot_params zp{};
  if (params.header) {
    zp.hdr = *params.header;
  } else {
    zp.hdr.boot_flag = kBootFlag;
    zp.hdr.header = kHeaderMagic;
    zp.hdr.kernel_alignment = 0x1000000;
  }
  zp.hdr.type_of_loader = kLoaderTypeUndefined;
  zp.hdr.cmd_line_ptr = static_cast<uint32_t>(params.cmdline.value());
  zp.ext_cmd_line_ptr = static_cast<uint32_t>(params.cmdline.value() >> 32);
  if (params.initrd) {
    zp.hdr.ramdisk_image = static_cast<uint32_t>(params.initrd->addr.value());
    zp.ext_ramdisk_image = static_cast<uint32_t>(params.initrd->addr.value() >> 32);
    zp.hdr.ramdisk_size = static_cast<uint32_t>(params.initrd->size);
    zp.ext_ramdisk_size = static_cast<uint32_t>(params.initrd->size >> 32);
  }
  if (params.rsdp) {
    zp.acpi_rsdp_addr = params.rsdp->value();
  }
  auto map = build_e820(mem);
  if (map.size() > E820_MAX_ENTRIES_ZEROPAGE) {
    return Error(ErrorCode::kInternal, "e820 map does not fit in the zero page");
  }
  zp.e820_entries = static_cast<uint8_t>(map.size());
  for (size_t i = 0; i < map.size(); ++i) {
    zp.e820_table[i] =
        boot_e820_entry{map[i].addr, map[i].size, static_cast<uint32_t>(map[i].type)};
  }
  return mem.write_obj(layout::kZeroPage, zp);
}

}  // namespace petrel

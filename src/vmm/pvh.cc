#include "vmm/pvh.h"

#include <array>

#include <fmt/format.h>

#include "vmm/e820.h"
#include "vmm/layout.h"
#include "vmm/long_mode.h"

namespace petrel {

namespace {

constexpr uint32_t kStartInfoMagic = 0x336ec578;  // XEN_HVM_START_MAGIC_VALUE

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version >= 1
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
static_assert(sizeof(HvmMemmapEntry) == 24);

constexpr uint64_t kModlistOffset = 64;
constexpr uint64_t kMemmapOffset = 128;
constexpr uint64_t kMaxMemmapEntries = (GuestMemory::kPageSize - kMemmapOffset) / 24;

}  // namespace

Result<void> write_pvh_start_info(const GuestMemory& mem, const PvhParams& params) {
  auto map = build_e820(mem);
  if (map.size() > kMaxMemmapEntries) {
    return Error(ErrorCode::kInternal, "PVH memmap does not fit its page");
  }
  HvmStartInfo info{};
  info.magic = kStartInfoMagic;
  info.version = 1;
  info.cmdline_paddr = params.cmdline.value();
  info.rsdp_paddr = params.rsdp ? params.rsdp->value() : 0;
  info.memmap_paddr = (layout::kPvhStartInfo + kMemmapOffset).value();
  info.memmap_entries = static_cast<uint32_t>(map.size());
  if (params.initrd) {
    info.nr_modules = 1;
    info.modlist_paddr = (layout::kPvhStartInfo + kModlistOffset).value();
    PETREL_TRY(
        mem.write_obj(layout::kPvhStartInfo + kModlistOffset,
                      HvmModlistEntry{params.initrd->addr.value(), params.initrd->size, 0, 0}));
  }
  for (size_t i = 0; i < map.size(); ++i) {
    PETREL_TRY(mem.write_obj(
        layout::kPvhStartInfo + kMemmapOffset + i * sizeof(HvmMemmapEntry),
        HvmMemmapEntry{map[i].addr, map[i].size, static_cast<uint32_t>(map[i].type), 0}));
  }
  return mem.write_obj(layout::kPvhStartInfo, info);
}

Result<void> setup_pvh_vcpu(const KvmVcpu& vcpu, GuestAddress entry) {
  PETREL_TRY_ASSIGN(kvm_sregs sregs, vcpu.get_sregs());
  PETREL_TRY(vcpu.set_sregs(protected_mode_sregs(sregs)));
  kvm_regs regs{};
  regs.rflags = 0x2;
  regs.rip = entry.value();
  regs.rbx = layout::kPvhStartInfo.value();
  PETREL_TRY(vcpu.set_regs(regs));
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  return vcpu.set_fpu(fpu);
}

}  // namespace petrel

#include "vmm/long_mode.h"

#include <algorithm>
#include <array>

#include "vmm/layout.h"

namespace petrel {

namespace {

constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWritable = 1ull << 1;
constexpr uint64_t kPteUser = 1ull << 2;
constexpr uint64_t kPtePageSize = 1ull << 7;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kTwoMiB = 2ull << 20;

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Mp = 1ull << 1;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Ne = 1ull << 5;
constexpr uint64_t kCr0Wp = 1ull << 16;
constexpr uint64_t kCr0Am = 1ull << 18;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

// A GDT descriptor (Intel SDM vol. 3A, 3.4.5 "Segment Descriptors") from flags, base, limit.
constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000u) << 32) | ((uint64_t{flags} & 0x0000f0ffu) << 40) |
         ((uint64_t{limit} & 0x000f0000u) << 32) | ((uint64_t{base} & 0x00ffffffu) << 16) |
         (uint64_t{limit} & 0x0000ffffu);
}

constexpr std::array<uint64_t, 5> kGdt = {
    0,
    gdt_entry(0xc09b, 0, 0xfffff),  // 0x08: 32-bit code, present, DPL 0 (PVH entry)
    gdt_entry(0xa09b, 0, 0xfffff),  // 0x10: 64-bit code, present, DPL 0, accessed
    gdt_entry(0xc093, 0, 0xfffff),  // 0x18: data, read/write, accessed
    gdt_entry(0x808b, 0, 0xfffff),  // 0x20: 64-bit TSS (busy)
};

kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector) {
  kvm_segment seg{};
  seg.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  seg.g = (entry >> 55) & 1;
  seg.limit = seg.g ? (limit << 12) | 0xfff : limit;
  seg.selector = selector;
  seg.type = (entry >> 40) & 0xf;
  seg.present = (entry >> 47) & 1;
  seg.dpl = (entry >> 45) & 3;
  seg.db = (entry >> 54) & 1;
  seg.s = (entry >> 44) & 1;
  seg.l = (entry >> 53) & 1;
  seg.avl = (entry >> 52) & 1;
  seg.unusable = seg.present ? 0 : 1;
  return seg;
}

}  // namespace

Result<void> write_long_mode_tables(const GuestMemory& mem, uint64_t map_bytes, bool user_pages) {
  for (size_t i = 0; i < kGdt.size(); ++i) {
    PETREL_TRY(mem.write_obj(layout::kGdt + i * sizeof(uint64_t), kGdt[i]));
  }
  uint64_t gib = (map_bytes + kGiB - 1) / kGiB;
  gib = std::clamp<uint64_t>(gib, 4, layout::kMaxIdentityGiB);
  const uint64_t flags = kPtePresent | kPteWritable | (user_pages ? kPteUser : 0);

  PETREL_TRY(mem.write_obj(layout::kPml4, layout::kPdpt.value() | flags));
  for (uint64_t g = 0; g < gib; ++g) {
    GuestAddress pd = layout::kPageDirectories + g * GuestMemory::kPageSize;
    PETREL_TRY(mem.write_obj(layout::kPdpt + g * sizeof(uint64_t), pd.value() | flags));
    std::array<uint64_t, 512> entries{};
    for (uint64_t i = 0; i < entries.size(); ++i) {
      entries[i] = (g * kGiB + i * kTwoMiB) | flags | kPtePageSize;
    }
    PETREL_TRY(mem.write_obj(pd, entries));
  }
  return {};
}

kvm_sregs long_mode_sregs(kvm_sregs sregs) {
  sregs.gdt.base = layout::kGdt.value();
  sregs.gdt.limit = sizeof(kGdt) - 1;
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  sregs.cs = segment_from_gdt(kGdt[layout::kBootCs / 8], layout::kBootCs);
  kvm_segment data = segment_from_gdt(kGdt[layout::kBootDs / 8], layout::kBootDs);
  sregs.ds = data;
  sregs.es = data;
  sregs.fs = data;
  sregs.gs = data;
  sregs.ss = data;
  sregs.tr = segment_from_gdt(kGdt[layout::kBootTss / 8], layout::kBootTss);

  sregs.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Am | kCr0Pg;
  sregs.cr3 = layout::kPml4.value();
  sregs.cr4 = kCr4Pae;
  sregs.efer = kEferLme | kEferLma;
  return sregs;
}

kvm_sregs protected_mode_sregs(kvm_sregs sregs) {
  sregs = long_mode_sregs(sregs);
  sregs.cs = segment_from_gdt(kGdt[layout::kBootCs32 / 8], layout::kBootCs32);
  sregs.cr0 = kCr0Pe | kCr0Et;
  sregs.cr3 = 0;
  sregs.cr4 = 0;
  sregs.efer = 0;
  return sregs;
}

Result<void> setup_long_mode_vcpu(const KvmVcpu& vcpu, const LongModeEntry& entry) {
  PETREL_TRY_ASSIGN(kvm_sregs sregs, vcpu.get_sregs());
  PETREL_TRY(vcpu.set_sregs(long_mode_sregs(sregs)));

  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved-as-one; IF clear
  regs.rip = entry.rip.value();
  regs.rsi = entry.rsi.value();
  regs.rsp = entry.rsp.value();
  regs.rbp = entry.rsp.value();
  PETREL_TRY(vcpu.set_regs(regs));

  // x87 and SSE state as after FNINIT / reset (Intel SDM vol. 1, 8.1.5 and 11.6.4).
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  return vcpu.set_fpu(fpu);
}

}  // namespace petrel

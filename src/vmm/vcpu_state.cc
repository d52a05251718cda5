#include "vmm/vcpu_state.h"

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

constexpr uint32_t kMsrIa32Tsc = 0x10;
constexpr uint32_t kMsrIa32TscDeadline = 0x6e0;

// The MTRRs, which KVM_GET_MSR_INDEX_LIST leaves out (QEMU saves them by hand too; Intel SDM
// vol. 3A 11.11): IA32_MTRR_DEF_TYPE, the fixed-range MTRRs and 8 variable-range pairs.
constexpr std::array<uint32_t, 28> kMtrrMsrs = {0x2ff, 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a,
                                                0x26b, 0x26c, 0x26d, 0x26e, 0x26f, 0x200, 0x201,
                                                0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208,
                                                0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f};

// "PVCS" read as little-endian bytes.
constexpr uint32_t kMagic = 0x53435650;
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxRecords = 32;
constexpr size_t kMaxXsaveBytes = 256 * 1024;  // AMX needs ~11 KiB; far above any real area
constexpr uint32_t kMaxMsrs = 1024;
constexpr size_t kMsrEntryBytes = 12;  // u32 index + u64 value
constexpr size_t kMaxPayload = std::max(kMaxXsaveBytes, 4 + kMaxMsrs * kMsrEntryBytes);

enum Tag : uint32_t {
  kTagVcpuId = 1,
  kTagMpState,
  kTagEvents,
  kTagRegs,
  kTagSregs,
  kTagXsave,
  kTagXcrs,
  kTagDebugregs,
  kTagLapic,
  kTagMsrs,
  kTagTscKhz,
  kTagEnd,  // one past the last tag
};

constexpr const char* tag_name(uint32_t tag) {
  constexpr const char* kNames[] = {"",      "vcpu_id", "mp_state",  "events", "regs", "sregs",
                                    "xsave", "xcrs",    "debugregs", "lapic",  "msrs", "tsc_khz"};
  return tag < kTagEnd ? kNames[tag] : "unknown";
}

// PVM reads an unregistered VIF page as kVifEnable with page 0. Writing that back could
// register guest page 0; writing 0 leaves the vCPU unregistered, as it was.
MsrValue restorable(MsrValue msr) {
  if (msr.index == PvmHost::kMsrVifPage && (msr.value & ~uint64_t{0xfff}) == 0) {
    return {msr.index, 0};
  }
  return msr;
}

Result<void> restore_msrs(const KvmVcpu& vcpu, std::span<const MsrValue> msrs) {
  std::vector<MsrValue> first;
  std::vector<MsrValue> last;
  for (const auto& msr : msrs) {
    (msr.index == kMsrIa32TscDeadline ? last : first).push_back(restorable(msr));
  }
  // IA32_TSC first among the rest, so that MSRs relative to the guest TSC see the right one.
  std::stable_partition(first.begin(), first.end(),
                        [](const MsrValue& m) { return m.index == kMsrIa32Tsc; });
  PETREL_TRY(vcpu.set_msrs(first));
  return last.empty() ? Result<void>() : vcpu.set_msrs(last);
}

std::vector<std::byte> encode_msrs(std::span<const MsrValue> msrs) {
  StateWriter w;
  w.u32(static_cast<uint32_t>(msrs.size()));
  for (const auto& msr : msrs) {
    w.u32(msr.index);
    w.u64(msr.value);
  }
  return std::move(w).take();
}

Result<std::vector<MsrValue>> decode_msrs(const StateRecord& rec) {
  StateReader r(rec.payload, fmt::format("vCPU state record 'msrs' (at offset {})", rec.offset));
  PETREL_TRY_ASSIGN(uint32_t count, r.u32());
  if (count > kMaxMsrs || r.remaining() != count * kMsrEntryBytes) {
    return r.fail(fmt::format("{} MSRs in {} bytes (at most {} MSRs of {} bytes each)", count,
                              r.remaining(), kMaxMsrs, kMsrEntryBytes));
  }
  std::vector<MsrValue> out(count);
  for (auto& msr : out) {
    PETREL_TRY_ASSIGN(msr.index, r.u32());
    PETREL_TRY_ASSIGN(msr.value, r.u64());
  }
  PETREL_TRY(r.expect_end());
  return out;
}

}  // namespace

Result<std::vector<uint32_t>> vcpu_state_msrs(const KvmVcpu& probe,
                                              std::span<const uint32_t> msr_index_list,
                                              const PvmHost& pvm) {
  // KVM_GET_MSRS stops at the first MSR it refuses and returns how many it read (api.rst 4.18):
  // keep those, skip the refused one, go on with the rest.
  std::vector<uint32_t> candidates(msr_index_list.begin(), msr_index_list.end());
  for (uint32_t msr : kMtrrMsrs) {
    if (std::find(candidates.begin(), candidates.end(), msr) == candidates.end()) {
      candidates.push_back(msr);
    }
  }
  std::vector<uint32_t> out;
  std::span<const uint32_t> rest = candidates;
  while (!rest.empty()) {
    PETREL_TRY_ASSIGN(auto read, probe.get_msrs(rest));
    for (const auto& msr : read) {
      out.push_back(msr.index);
    }
    rest = rest.subspan(std::min(rest.size(), read.size() + 1));
  }
  if (pvm.is_pvm() && std::find(out.begin(), out.end(), PvmHost::kMsrVifPage) == out.end()) {
    const uint32_t vif = PvmHost::kMsrVifPage;
    PETREL_TRY_ASSIGN(auto read, probe.get_msrs(std::span(&vif, 1)));
    if (read.empty()) {
      return Error(ErrorCode::kKvm, "KVM_GET_MSRS: this PVM host refuses the VIF page MSR");
    }
    out.push_back(vif);
  }
  return out;
}

Result<void> settle_vcpu(const KvmVcpu& vcpu) {
  vcpu.set_immediate_exit(true);
  auto ran = vcpu.run();
  vcpu.set_immediate_exit(false);
  PETREL_TRY(std::move(ran).context("completing the last exit before saving the vCPU"));
  return {};
}

Result<VcpuState> capture_vcpu(const KvmVcpu& vcpu, std::span<const uint32_t> msrs,
                               size_t xsave_bytes) {
  VcpuState s;
  s.vcpu_id = vcpu.id();
  PETREL_TRY_ASSIGN(s.mp_state, vcpu.get_mp_state());
  PETREL_TRY_ASSIGN(s.events, vcpu.get_vcpu_events());
  PETREL_TRY_ASSIGN(s.regs, vcpu.get_regs());
  PETREL_TRY_ASSIGN(s.sregs, vcpu.get_sregs());
  PETREL_TRY_ASSIGN(s.xsave, vcpu.get_xsave(xsave_bytes));
  PETREL_TRY_ASSIGN(s.xcrs, vcpu.get_xcrs());
  PETREL_TRY_ASSIGN(s.debugregs, vcpu.get_debugregs());
  PETREL_TRY_ASSIGN(s.lapic, vcpu.get_lapic());
  PETREL_TRY_ASSIGN(s.msrs, vcpu.get_msrs(msrs));
  if (s.msrs.size() != msrs.size()) {
    return Error(ErrorCode::kKvm, fmt::format("KVM_GET_MSRS refused MSR {:#x} on vCPU {}",
                                              msrs[s.msrs.size()], vcpu.id()));
  }
  PETREL_TRY_ASSIGN(s.tsc_khz, vcpu.get_tsc_khz());
  return s;
}

Result<void> restore_vcpu(const KvmVcpu& vcpu, const VcpuState& s, size_t xsave_bytes) {
  if (s.vcpu_id != vcpu.id()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("state of vCPU {} restored into vCPU {}", s.vcpu_id, vcpu.id()));
  }
  if (s.xsave.size() > xsave_bytes) {
    return Error(ErrorCode::kUnsupported,
                 fmt::format("saved XSAVE area of {} bytes; this host's KVM takes {}",
                             s.xsave.size(), xsave_bytes));
  }
  if (s.tsc_khz != 0) {
    PETREL_TRY_ASSIGN(uint32_t khz, vcpu.get_tsc_khz());
    if (khz != s.tsc_khz) {
      PETREL_TRY(vcpu.set_tsc_khz(s.tsc_khz).context(
          fmt::format("the guest's TSC ran at {} kHz, this host's at {} kHz", s.tsc_khz, khz)));
    }
  }
  PETREL_TRY(vcpu.set_regs(s.regs));
  PETREL_TRY(vcpu.set_sregs(s.sregs));
  std::vector<std::byte> xsave(xsave_bytes);
  std::memcpy(xsave.data(), s.xsave.data(), s.xsave.size());
  PETREL_TRY(vcpu.set_xsave(xsave));
  PETREL_TRY(vcpu.set_xcrs(s.xcrs));
  PETREL_TRY(vcpu.set_debugregs(s.debugregs));
  PETREL_TRY(vcpu.set_lapic(s.lapic));
  PETREL_TRY(restore_msrs(vcpu, s.msrs));
  PETREL_TRY(vcpu.set_vcpu_events(s.events));
  return vcpu.set_mp_state(s.mp_state);
}

std::vector<std::byte> encode(const VcpuState& s) {
  StateWriter w;
  w.header(kMagic, kVersion);
  w.u32(kTagEnd - 1);
  w.raw_record(kTagVcpuId, s.vcpu_id);
  w.raw_record(kTagMpState, s.mp_state);
  w.raw_record(kTagEvents, s.events);
  w.raw_record(kTagRegs, s.regs);
  w.raw_record(kTagSregs, s.sregs);
  w.record(kTagXsave, s.xsave);
  w.raw_record(kTagXcrs, s.xcrs);
  w.raw_record(kTagDebugregs, s.debugregs);
  w.raw_record(kTagLapic, s.lapic);
  w.record(kTagMsrs, encode_msrs(s.msrs));
  w.raw_record(kTagTscKhz, s.tsc_khz);
  return std::move(w).take();
}

Result<VcpuState> decode_vcpu_state(std::span<const std::byte> bytes) {
  StateReader r(bytes, "vCPU state");
  PETREL_TRY(r.expect_header(kMagic, kVersion));
  PETREL_TRY_ASSIGN(auto records, r.records(kMaxRecords, kMaxPayload));
  PETREL_TRY(r.expect_end());
  VcpuState s;
  uint32_t seen = 0;
  for (const auto& rec : records) {
    const char* name = tag_name(rec.tag);
    switch (rec.tag) {
      case kTagVcpuId: {
        PETREL_TRY_ASSIGN(s.vcpu_id, r.fixed<uint32_t>(rec, name));
        break;
      }
      case kTagMpState: {
        PETREL_TRY_ASSIGN(s.mp_state, r.fixed<kvm_mp_state>(rec, name));
        break;
      }
      case kTagEvents: {
        PETREL_TRY_ASSIGN(s.events, r.fixed<kvm_vcpu_events>(rec, name));
        break;
      }
      case kTagRegs: {
        PETREL_TRY_ASSIGN(s.regs, r.fixed<kvm_regs>(rec, name));
        break;
      }
      case kTagSregs: {
        PETREL_TRY_ASSIGN(s.sregs, r.fixed<kvm_sregs>(rec, name));
        break;
      }
      case kTagXsave: {
        if (rec.payload.size() < sizeof(kvm_xsave) || rec.payload.size() > kMaxXsaveBytes) {
          return r.fail_at(rec.offset,
                           fmt::format("xsave is {} bytes, expected {} to {}", rec.payload.size(),
                                       sizeof(kvm_xsave), kMaxXsaveBytes));
        }
        s.xsave.assign(rec.payload.begin(), rec.payload.end());
        break;
      }
      case kTagXcrs: {
        PETREL_TRY_ASSIGN(s.xcrs, r.fixed<kvm_xcrs>(rec, name));
        if (s.xcrs.nr_xcrs > KVM_MAX_XCRS) {
          return r.fail_at(rec.offset,
                           fmt::format("{} XCRs, at most {}", s.xcrs.nr_xcrs, KVM_MAX_XCRS));
        }
        break;
      }
      case kTagDebugregs: {
        PETREL_TRY_ASSIGN(s.debugregs, r.fixed<kvm_debugregs>(rec, name));
        break;
      }
      case kTagLapic: {
        PETREL_TRY_ASSIGN(s.lapic, r.fixed<kvm_lapic_state>(rec, name));
        break;
      }
      case kTagMsrs: {
        PETREL_TRY_ASSIGN(s.msrs, decode_msrs(rec));
        break;
      }
      case kTagTscKhz: {
        PETREL_TRY_ASSIGN(s.tsc_khz, r.fixed<uint32_t>(rec, name));
        break;
      }
      default:
        return r.fail_at(rec.offset, fmt::format("unknown record tag {}", rec.tag));
    }
    seen |= 1u << rec.tag;
  }
  for (uint32_t tag = kTagVcpuId; tag < kTagEnd; ++tag) {
    if ((seen & (1u << tag)) == 0) {
      return r.fail(fmt::format("record '{}' is missing", tag_name(tag)));
    }
  }
  return s;
}

}  // namespace petrel

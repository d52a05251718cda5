#include "vmm/vm_kvm_state.h"

#include <algorithm>

#include <fmt/format.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

// "PVMS" read as little-endian bytes.
constexpr uint32_t kMagic = 0x534d5650;
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxRecords = 16;
constexpr size_t kMaxPayload =
    std::max({sizeof(kvm_irqchip), sizeof(kvm_pit_state2), sizeof(kvm_clock_data)});

enum Tag : uint32_t {
  kTagPicMaster = 1,
  kTagPicSlave,
  kTagIoapic,
  kTagPit,
  kTagClock,
  kTagEnd,  // one past the last tag
};

constexpr const char* tag_name(uint32_t tag) {
  constexpr const char* kNames[] = {"", "pic_master", "pic_slave", "ioapic", "pit", "clock"};
  return tag < kTagEnd ? kNames[tag] : "unknown";
}

Result<kvm_irqchip> decode_chip(const StateReader& r, const StateRecord& rec, uint32_t chip_id) {
  PETREL_TRY_ASSIGN(kvm_irqchip chip, r.fixed<kvm_irqchip>(rec, tag_name(rec.tag)));
  if (chip.chip_id != chip_id) {
    return r.fail_at(rec.offset, fmt::format("{} has chip_id {}, expected {}", tag_name(rec.tag),
                                             chip.chip_id, chip_id));
  }
  return chip;
}

}  // namespace

Result<VmKvmState> capture_vm_kvm_state(const KvmVm& vm) {
  VmKvmState s;
  PETREL_TRY_ASSIGN(s.pic_master, vm.get_irqchip(KVM_IRQCHIP_PIC_MASTER));
  PETREL_TRY_ASSIGN(s.pic_slave, vm.get_irqchip(KVM_IRQCHIP_PIC_SLAVE));
  PETREL_TRY_ASSIGN(s.ioapic, vm.get_irqchip(KVM_IRQCHIP_IOAPIC));
  PETREL_TRY_ASSIGN(s.pit, vm.get_pit2());
  PETREL_TRY_ASSIGN(s.clock, vm.get_clock());
  return s;
}

Result<void> restore_vm_kvm_state(const KvmVm& vm, const VmKvmState& s, ClockRestore mode) {
  PETREL_TRY(vm.set_irqchip(s.pic_master));
  PETREL_TRY(vm.set_irqchip(s.pic_slave));
  PETREL_TRY(vm.set_irqchip(s.ioapic));
  PETREL_TRY(vm.set_pit2(s.pit));
  kvm_clock_data clock = s.clock;
  // KVM_SET_CLOCK reads only KVM_CLOCK_REALTIME from flags (and refuses unknown flags); the
  // rest (TSC_STABLE, HOST_TSC) describe the capture.
  clock.flags &= mode == ClockRestore::kAdvanceByRealTime ? KVM_CLOCK_REALTIME : 0u;
  return vm.set_clock(clock);
}

std::vector<std::byte> encode(const VmKvmState& s) {
  StateWriter w;
  w.header(kMagic, kVersion);
  w.u32(kTagEnd - 1);
  w.raw_record(kTagPicMaster, s.pic_master);
  w.raw_record(kTagPicSlave, s.pic_slave);
  w.raw_record(kTagIoapic, s.ioapic);
  w.raw_record(kTagPit, s.pit);
  w.raw_record(kTagClock, s.clock);
  return std::move(w).take();
}

Result<VmKvmState> decode_vm_kvm_state(std::span<const std::byte> bytes) {
  StateReader r(bytes, "VM KVM state");
  PETREL_TRY(r.expect_header(kMagic, kVersion));
  PETREL_TRY_ASSIGN(auto records, r.records(kMaxRecords, kMaxPayload));
  PETREL_TRY(r.expect_end());
  VmKvmState s;
  uint32_t seen = 0;
  for (const auto& rec : records) {
    switch (rec.tag) {
      case kTagPicMaster: {
        PETREL_TRY_ASSIGN(s.pic_master, decode_chip(r, rec, KVM_IRQCHIP_PIC_MASTER));
        break;
      }
      case kTagPicSlave: {
        PETREL_TRY_ASSIGN(s.pic_slave, decode_chip(r, rec, KVM_IRQCHIP_PIC_SLAVE));
        break;
      }
      case kTagIoapic: {
        PETREL_TRY_ASSIGN(s.ioapic, decode_chip(r, rec, KVM_IRQCHIP_IOAPIC));
        break;
      }
      case kTagPit: {
        PETREL_TRY_ASSIGN(s.pit, r.fixed<kvm_pit_state2>(rec, tag_name(rec.tag)));
        break;
      }
      case kTagClock: {
        PETREL_TRY_ASSIGN(s.clock, r.fixed<kvm_clock_data>(rec, tag_name(rec.tag)));
        break;
      }
      default:
        return r.fail_at(rec.offset, fmt::format("unknown record tag {}", rec.tag));
    }
    seen |= 1u << rec.tag;
  }
  for (uint32_t tag = kTagPicMaster; tag < kTagEnd; ++tag) {
    if ((seen & (1u << tag)) == 0) {
      return r.fail(fmt::format("record '{}' is missing", tag_name(tag)));
    }
  }
  return s;
}

}  // namespace petrel

// Vm: saving the machine's state and building a VM from saved state (vm.h: save_state,
// create_restored). The section names and what each holds are docs/snapshot.md's "State
// sections".
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/base/state_codec.h"
#include "vmm/layout.h"
#include "vmm/vcpu_state.h"
#include "vmm/vm.h"

namespace petrel {

namespace {

constexpr uint32_t kMachineMagic = 0x4d434d50;  // "PMCM"
constexpr uint32_t kMachineVersion = 1;
constexpr std::string_view kMachineSection = "machine";
constexpr std::string_view kVmKvmSection = "kvm.vm";
constexpr std::string_view kSerialSection = "dev.serial";
constexpr std::string_view kI8042Section = "dev.i8042";
constexpr std::string_view kVirtioSection = "dev.virtio";

std::string vcpu_section(uint32_t id) {
  return fmt::format("vcpu.{}", id);
}

uint8_t mode_code(ExecMode mode) {
  switch (mode) {
    case ExecMode::kHardware:
      return 0;
    case ExecMode::kPvmEmulated:
      return 1;
    case ExecMode::kPvmNative:
      return 2;
  }
  return 0;
}

struct MachineRecord {
  uint32_t vcpus = 0;
  ExecMode mode = ExecMode::kHardware;
  uint64_t memory_bytes = 0;
};

std::vector<std::byte> encode_machine(const MachineRecord& m) {
  StateWriter w;
  w.header(kMachineMagic, kMachineVersion);
  w.u32(m.vcpus);
  w.u8(mode_code(m.mode));
  w.u64(m.memory_bytes);
  return std::move(w).take();
}

Result<MachineRecord> decode_machine(std::span<const std::byte> bytes) {
  StateReader r(bytes, "machine state");
  PETREL_TRY(r.expect_header(kMachineMagic, kMachineVersion));
  MachineRecord m;
  PETREL_TRY_ASSIGN(m.vcpus, r.u32());
  PETREL_TRY_ASSIGN(uint8_t mode, r.u8());
  if (mode > 2) {
    return r.fail(fmt::format("unknown execution mode {}", mode));
  }
  m.mode = mode == 0   ? ExecMode::kHardware
           : mode == 1 ? ExecMode::kPvmEmulated
                       : ExecMode::kPvmNative;
  PETREL_TRY_ASSIGN(m.memory_bytes, r.u64());
  PETREL_TRY(r.expect_end());
  return m;
}

// The sections by name; refuses names restore does not know (a newer petrel's state).
class SectionIndex {
 public:
  static Result<SectionIndex> build(std::span<const StateSection> sections, uint32_t vcpus) {
    SectionIndex index;
    for (const auto& s : sections) {
      index.sections_.emplace_back(&s);
    }
    for (const auto& s : sections) {
      bool known = s.name == kMachineSection || s.name == kVmKvmSection ||
                   s.name == kSerialSection || s.name == kI8042Section || s.name == kVirtioSection;
      for (uint32_t id = 0; id < vcpus && !known; ++id) {
        known = s.name == vcpu_section(id);
      }
      if (!known) {
        return Error(ErrorCode::kInvalidArgument,
                     fmt::format("saved state has an unknown section \"{}\" (from another petrel "
                                 "version, or for more vCPUs than the config has?)",
                                 s.name));
      }
    }
    return index;
  }

  Result<std::span<const std::byte>> get(std::string_view name) const {
    for (const auto* s : sections_) {
      if (s->name == name) {
        return std::span<const std::byte>(s->data);
      }
    }
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("saved state lacks the \"{}\" section", name));
  }

 private:
  std::vector<const StateSection*> sections_;
};

}  // namespace

Result<std::vector<StateSection>> Vm::save_state() {
  if (!gate_ || !gate_->closed()) {
    return Error(ErrorCode::kState, "the VM must be paused to save its state");
  }
  std::vector<StateSection> out;
  out.push_back({std::string(kMachineSection), encode_machine({static_cast<uint32_t>(vcpus_.size()),
                                                               mode_, memory_.total_size()})});
  PETREL_TRY_ASSIGN(auto msr_list, kvm_.msr_index_list());
  PETREL_TRY_ASSIGN(auto msrs, vcpu_state_msrs(vcpus_.front()->kvm(), msr_list, pvm_));
  const size_t xsave_bytes = vm_.xsave_size();
  for (uint32_t id = 0; id < vcpus_.size(); ++id) {
    const KvmVcpu& vcpu = vcpus_[id]->kvm();
    auto settled = settle_vcpu(vcpu);
    if (!settled) {
      return std::move(settled).error().context(fmt::format("saving vCPU {}", id));
    }
    auto state = capture_vcpu(vcpu, msrs, xsave_bytes);
    if (!state) {
      return std::move(state).error().context(fmt::format("saving vCPU {}", id));
    }
    out.push_back({vcpu_section(id), encode(*state)});
  }
  PETREL_TRY_ASSIGN(VmKvmState kvm_state, capture_vm_kvm_state(vm_));
  out.push_back({std::string(kVmKvmSection), encode(kvm_state)});
  out.push_back({std::string(kSerialSection), serial_->save_state()});
  out.push_back({std::string(kI8042Section), i8042_->save_state()});
  PETREL_TRY_ASSIGN(auto virtio_bytes, virtio_->save_state());
  out.push_back({std::string(kVirtioSection), std::move(virtio_bytes)});
  return out;
}

Result<std::unique_ptr<Vm>> Vm::create_restored(const VmConfig& config, GuestMemory memory,
                                                std::span<const StateSection> sections,
                                                ClockRestore clock, VmHooks hooks) {
  const auto want = layout::ram_regions(config.memory_bytes);
  bool same = want.size() == memory.regions().size();
  for (size_t i = 0; same && i < want.size(); ++i) {
    same =
        want[i].start == memory.regions()[i].start() && want[i].size == memory.regions()[i].size();
  }
  if (!same) {
    return Error(ErrorCode::kInvalidArgument,
                 "the saved guest memory does not have the layout of the config's memory size");
  }
  PETREL_TRY_ASSIGN(auto machine, create_machine(config, std::move(memory), std::move(hooks)));
  PETREL_TRY(machine->restore_state(config, sections, clock));
  return machine;
}

Result<void> Vm::restore_state(const VmConfig& config, std::span<const StateSection> sections,
                               ClockRestore clock) {
  PETREL_TRY_ASSIGN(auto index, SectionIndex::build(sections, config.vcpus));
  PETREL_TRY_ASSIGN(auto machine_bytes, index.get(kMachineSection));
  PETREL_TRY_ASSIGN(MachineRecord saved, decode_machine(machine_bytes));
  if (saved.vcpus != config.vcpus || saved.memory_bytes != memory_.total_size()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("saved state is of a VM with {} vCPU(s) and {} bytes of RAM; the "
                             "config has {} and {}",
                             saved.vcpus, saved.memory_bytes, config.vcpus, memory_.total_size()));
  }
  const bool host_pvm = pvm_.is_pvm();
  const bool saved_pvm = saved.mode != ExecMode::kHardware;
  if (host_pvm != saved_pvm) {
    return Error(ErrorCode::kUnsupported,
                 fmt::format("the state was saved in {} mode; this host runs {} guests",
                             to_string(saved.mode), host_pvm ? "PVM" : "hardware-KVM"));
  }
  mode_ = saved.mode;
  PETREL_TRY(create_vcpus(config));

  PETREL_TRY_ASSIGN(auto kvm_bytes, index.get(kVmKvmSection));
  PETREL_TRY_ASSIGN(VmKvmState kvm_state, decode_vm_kvm_state(kvm_bytes));
  const size_t xsave_bytes = vm_.xsave_size();
  std::vector<VcpuState> vcpu_states;
  for (uint32_t id = 0; id < config.vcpus; ++id) {
    PETREL_TRY_ASSIGN(auto bytes, index.get(vcpu_section(id)));
    auto state = decode_vcpu_state(bytes);
    if (!state) {
      return std::move(state).error().context(fmt::format("vCPU {}", id));
    }
    if (state->vcpu_id != id) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("section vcpu.{} holds vCPU {}", id, state->vcpu_id));
    }
    vcpu_states.push_back(std::move(state).value());
  }
  PETREL_TRY(restore_vm_kvm_state(vm_, kvm_state, clock));
  for (uint32_t id = 0; id < config.vcpus; ++id) {
    auto restored = restore_vcpu(vcpus_[id]->kvm(), vcpu_states[id], xsave_bytes);
    if (!restored) {
      return std::move(restored).error().context(fmt::format("restoring vCPU {}", id));
    }
  }
  // The UART and the keyboard controller drive IRQ lines of the irqchip restored above.
  PETREL_TRY_ASSIGN(auto serial_bytes, index.get(kSerialSection));
  PETREL_TRY(serial_->restore_state(serial_bytes));
  PETREL_TRY_ASSIGN(auto i8042_bytes, index.get(kI8042Section));
  PETREL_TRY(i8042_->restore_state(i8042_bytes));
  // After the vCPUs: a pending MSI-X vector is delivered into a LAPIC at once.
  PETREL_TRY_ASSIGN(auto virtio_bytes, index.get(kVirtioSection));
  PETREL_TRY(virtio_->restore_state(virtio_bytes));
  spdlog::info("restored {} vCPU(s), {} mode", config.vcpus, to_string(mode_));
  return {};
}

}  // namespace petrel

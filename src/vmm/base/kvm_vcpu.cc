#include "vmm/base/kvm_vcpu.h"

#include <sys/ioctl.h>

#include <atomic>
#include <cerrno>

#include <fmt/format.h>

namespace petrel {

namespace {

template <typename T>
Result<T> get(int fd, unsigned long req, const char* name) {
  T value{};
  if (::ioctl(fd, req, &value) < 0) {
    return Error::from_errno(name, errno);
  }
  return value;
}

template <typename T>
Result<void> set(int fd, unsigned long req, const T& value, const char* name) {
  if (::ioctl(fd, req, &value) < 0) {
    return Error::from_errno(name, errno);
  }
  return {};
}

struct MsrBuffer {
  explicit MsrBuffer(size_t n) : bytes(sizeof(kvm_msrs) + n * sizeof(kvm_msr_entry)) {
    msrs()->nmsrs = static_cast<uint32_t>(n);
  }
  kvm_msrs* msrs() { return reinterpret_cast<kvm_msrs*>(bytes.data()); }
  std::vector<std::byte> bytes;
};

}  // namespace

Result<bool> KvmVcpu::run() const {
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) {
      return false;
    }
    return Error::from_errno(fmt::format("KVM_RUN on vCPU {}", id_), errno);
  }
  return true;
}

void KvmVcpu::set_immediate_exit(bool on) const {
  std::atomic_ref<uint8_t>(run_data()->immediate_exit).store(on ? 1 : 0);
}

Result<kvm_regs> KvmVcpu::get_regs() const {
  return get<kvm_regs>(fd_.get(), KVM_GET_REGS, "KVM_GET_REGS");
}
Result<void> KvmVcpu::set_regs(const kvm_regs& regs) const {
  return set(fd_.get(), KVM_SET_REGS, regs, "KVM_SET_REGS");
}
Result<kvm_sregs> KvmVcpu::get_sregs() const {
  return get<kvm_sregs>(fd_.get(), KVM_GET_SREGS, "KVM_GET_SREGS");
}
Result<void> KvmVcpu::set_sregs(const kvm_sregs& sregs) const {
  return set(fd_.get(), KVM_SET_SREGS, sregs, "KVM_SET_SREGS");
}
Result<kvm_fpu> KvmVcpu::get_fpu() const {
  return get<kvm_fpu>(fd_.get(), KVM_GET_FPU, "KVM_GET_FPU");
}
Result<void> KvmVcpu::set_fpu(const kvm_fpu& fpu) const {
  return set(fd_.get(), KVM_SET_FPU, fpu, "KVM_SET_FPU");
}
Result<kvm_vcpu_events> KvmVcpu::get_vcpu_events() const {
  return get<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}
Result<void> KvmVcpu::set_vcpu_events(const kvm_vcpu_events& events) const {
  return set(fd_.get(), KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
}
Result<kvm_mp_state> KvmVcpu::get_mp_state() const {
  return get<kvm_mp_state>(fd_.get(), KVM_GET_MP_STATE, "KVM_GET_MP_STATE");
}

Result<std::optional<GuestAddress>> KvmVcpu::translate(uint64_t linear) const {
  kvm_translation tr{};
  tr.linear_address = linear;
  if (::ioctl(fd_.get(), KVM_TRANSLATE, &tr) < 0) {
    return Error::from_errno("KVM_TRANSLATE", errno);
  }
  if (!tr.valid) {
    return std::optional<GuestAddress>();
  }
  return std::optional<GuestAddress>(GuestAddress(tr.physical_address));
}

Result<void> KvmVcpu::set_cpuid(std::span<const kvm_cpuid_entry2> entries) const {
  std::vector<std::byte> buf(sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2));
  auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
  cpuid->nent = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), cpuid->entries);
  if (::ioctl(fd_.get(), KVM_SET_CPUID2, cpuid) < 0) {
    return Error::from_errno("KVM_SET_CPUID2", errno);
  }
  return {};
}

Result<std::vector<MsrValue>> KvmVcpu::get_msrs(std::span<const uint32_t> indices) const {
  MsrBuffer buf(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    buf.msrs()->entries[i] = kvm_msr_entry{.index = indices[i], .reserved = 0, .data = 0};
  }
  int n = ::ioctl(fd_.get(), KVM_GET_MSRS, buf.msrs());
  if (n < 0) {
    return Error::from_errno("KVM_GET_MSRS", errno);
  }
  std::vector<MsrValue> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({buf.msrs()->entries[i].index, buf.msrs()->entries[i].data});
  }
  return out;
}

Result<void> KvmVcpu::set_msrs(std::span<const MsrValue> msrs) const {
  MsrBuffer buf(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    buf.msrs()->entries[i] =
        kvm_msr_entry{.index = msrs[i].index, .reserved = 0, .data = msrs[i].value};
  }
  int n = ::ioctl(fd_.get(), KVM_SET_MSRS, buf.msrs());
  if (n < 0) {
    return Error::from_errno("KVM_SET_MSRS", errno);
  }
  if (static_cast<size_t>(n) != msrs.size()) {
    return Error(ErrorCode::kKvm, fmt::format("KVM_SET_MSRS: KVM refused MSR {:#x}",
                                              msrs[static_cast<size_t>(n)].index));
  }
  return {};
}

}  // namespace petrel

#include "vmm/base/kvm_vcpu.h"

#include <sys/ioctl.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace petrel {

static_assert(sizeof(kvm_xsave) == 4096, "kvm_xsave must have its C layout (4 KiB, flexible tail)");

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

Result<void> KvmVcpu::set_mp_state(const kvm_mp_state& state) const {
  return set(fd_.get(), KVM_SET_MP_STATE, state, "KVM_SET_MP_STATE");
}

Result<std::vector<std::byte>> KvmVcpu::get_xsave(size_t bytes) const {
  if (bytes < sizeof(kvm_xsave)) {
    return Error(ErrorCode::kInternal, fmt::format("XSAVE area of {} bytes; KVM needs at least {}",
                                                   bytes, sizeof(kvm_xsave)));
  }
  // kvm_xsave is an array of u32: keep the buffer 4-byte aligned.
  std::vector<uint32_t> words((bytes + 3) / 4);
  const bool xsave2 = bytes > sizeof(kvm_xsave);
  if (::ioctl(fd_.get(), xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, words.data()) < 0) {
    return Error::from_errno(xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE", errno);
  }
  auto raw = std::as_bytes(std::span(words)).first(bytes);
  return std::vector<std::byte>(raw.begin(), raw.end());
}

Result<void> KvmVcpu::set_xsave(std::span<const std::byte> area) const {
  if (area.size() < sizeof(kvm_xsave)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("XSAVE area of {} bytes; KVM_SET_XSAVE reads at least {}", area.size(),
                             sizeof(kvm_xsave)));
  }
  std::vector<uint32_t> words((area.size() + 3) / 4);
  std::memcpy(words.data(), area.data(), area.size());
  if (::ioctl(fd_.get(), KVM_SET_XSAVE, words.data()) < 0) {
    return Error::from_errno("KVM_SET_XSAVE", errno);
  }
  return {};
}

Result<kvm_xcrs> KvmVcpu::get_xcrs() const {
  return get<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS");
}
Result<void> KvmVcpu::set_xcrs(const kvm_xcrs& xcrs) const {
  return set(fd_.get(), KVM_SET_XCRS, xcrs, "KVM_SET_XCRS");
}
Result<kvm_lapic_state> KvmVcpu::get_lapic() const {
  return get<kvm_lapic_state>(fd_.get(), KVM_GET_LAPIC, "KVM_GET_LAPIC");
}
Result<void> KvmVcpu::set_lapic(const kvm_lapic_state& lapic) const {
  return set(fd_.get(), KVM_SET_LAPIC, lapic, "KVM_SET_LAPIC");
}
Result<kvm_debugregs> KvmVcpu::get_debugregs() const {
  return get<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}
Result<void> KvmVcpu::set_debugregs(const kvm_debugregs& regs) const {
  return set(fd_.get(), KVM_SET_DEBUGREGS, regs, "KVM_SET_DEBUGREGS");
}

Result<uint32_t> KvmVcpu::get_tsc_khz() const {
  int khz = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) {
    return Error::from_errno("KVM_GET_TSC_KHZ", errno);
  }
  return static_cast<uint32_t>(khz);
}

Result<void> KvmVcpu::set_tsc_khz(uint32_t khz) const {
  if (::ioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0) {
    return Error::from_errno(fmt::format("KVM_SET_TSC_KHZ {}", khz), errno);
  }
  return {};
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

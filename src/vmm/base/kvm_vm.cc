#include "vmm/base/kvm_vm.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>

#include <fmt/format.h>

#include "vmm/base/kvm_vcpu.h"

namespace petrel {

int KvmVm::check_extension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<void> KvmVm::enable_cap(uint32_t cap, uint64_t arg0) const {
  kvm_enable_cap req{};
  req.cap = cap;
  req.args[0] = arg0;
  if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &req) < 0) {
    return Error::from_errno(fmt::format("KVM_ENABLE_CAP {}", cap), errno);
  }
  return {};
}

Result<void> KvmVm::set_memory_region(uint32_t slot, GuestAddress guest, uint64_t size, void* host,
                                      uint32_t flags) const {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest.value();
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return Error::from_errno(
        fmt::format("KVM_SET_USER_MEMORY_REGION slot {} at {:#x}", slot, guest.value()), errno);
  }
  return {};
}

Result<void> KvmVm::set_tss_address(GuestAddress addr) const {
  if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, addr.value()) < 0) {
    return Error::from_errno("KVM_SET_TSS_ADDR", errno);
  }
  return {};
}

Result<void> KvmVm::set_identity_map_address(GuestAddress addr) const {
  uint64_t value = addr.value();
  if (::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &value) < 0) {
    return Error::from_errno("KVM_SET_IDENTITY_MAP_ADDR", errno);
  }
  return {};
}

Result<void> KvmVm::create_irqchip() const {
  if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) {
    return Error::from_errno("KVM_CREATE_IRQCHIP", errno);
  }
  return {};
}

Result<void> KvmVm::create_pit() const {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  if (::ioctl(fd_.get(), KVM_CREATE_PIT2, &config) < 0) {
    return Error::from_errno("KVM_CREATE_PIT2", errno);
  }
  return {};
}

Result<void> KvmVm::irq_line(uint32_t gsi, bool level) const {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  if (::ioctl(fd_.get(), KVM_IRQ_LINE, &irq) < 0) {
    return Error::from_errno(fmt::format("KVM_IRQ_LINE {}", gsi), errno);
  }
  return {};
}

Result<KvmVcpu> KvmVm::create_vcpu(uint32_t id) const {
  int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, id);
  if (fd < 0) {
    return Error::from_errno(fmt::format("KVM_CREATE_VCPU {}", id), errno);
  }
  UniqueFd vcpu_fd(fd);
  PETREL_TRY_ASSIGN(auto run,
                    MmapRegion::map_fd(fd, vcpu_run_size_, PROT_READ | PROT_WRITE, MAP_SHARED));
  return KvmVcpu(id, std::move(vcpu_fd), std::move(run));
}

}  // namespace petrel

#include "vmm/base/kvm_system.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <memory>

#include <fmt/format.h>

#include "vmm/base/kvm_vm.h"

namespace petrel {

Result<KvmSystem> KvmSystem::open(const char* path) {
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return Error::from_errno(fmt::format("open {}", path), errno)
        .context("KVM is not available (is /dev/kvm readable and writable?)");
  }
  KvmSystem kvm{UniqueFd(fd)};
  int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return Error(ErrorCode::kKvm,
                 fmt::format("KVM API version {} (petrel needs {})", version, KVM_API_VERSION));
  }
  return kvm;
}

int KvmSystem::check_extension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<size_t> KvmSystem::vcpu_mmap_size() const {
  int r = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (r < 0) {
    return Error::from_errno("KVM_GET_VCPU_MMAP_SIZE", errno);
  }
  return static_cast<size_t>(r);
}

Result<std::vector<kvm_cpuid_entry2>> KvmSystem::supported_cpuid() const {
  // kvm_cpuid2 ends in a flexible array: grow the buffer until KVM stops saying E2BIG.
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    std::vector<std::byte> buf(sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2));
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
    cpuid->nent = n;
    if (::ioctl(fd_.get(), KVM_GET_SUPPORTED_CPUID, cpuid) == 0) {
      return std::vector<kvm_cpuid_entry2>(cpuid->entries, cpuid->entries + cpuid->nent);
    }
    if (errno != E2BIG) {
      return Error::from_errno("KVM_GET_SUPPORTED_CPUID", errno);
    }
  }
  return Error(ErrorCode::kKvm, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

Result<std::vector<uint32_t>> KvmSystem::msr_index_list() const {
  kvm_msr_list probe{};
  if (::ioctl(fd_.get(), KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
    return Error::from_errno("KVM_GET_MSR_INDEX_LIST", errno);
  }
  std::vector<std::byte> buf(sizeof(kvm_msr_list) + probe.nmsrs * sizeof(uint32_t));
  auto* list = reinterpret_cast<kvm_msr_list*>(buf.data());
  list->nmsrs = probe.nmsrs;
  if (::ioctl(fd_.get(), KVM_GET_MSR_INDEX_LIST, list) < 0) {
    return Error::from_errno("KVM_GET_MSR_INDEX_LIST", errno);
  }
  return std::vector<uint32_t>(list->indices, list->indices + list->nmsrs);
}

Result<KvmVm> KvmSystem::create_vm() const {
  int fd;
  do {
    fd = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return Error::from_errno("KVM_CREATE_VM", errno);
  }
  PETREL_TRY_ASSIGN(size_t run_size, vcpu_mmap_size());
  return KvmVm(UniqueFd(fd), run_size);
}

}  // namespace petrel

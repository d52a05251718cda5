// KvmSystem: the /dev/kvm handle (KVM API, Documentation/virt/kvm/api.rst section 4: "system
// ioctls"). Owns the fd; creates VMs. Thread-compatible (const methods are safe concurrently).
#pragma once

#include "vmm/base/kvm_abi.h"

#include <vector>

#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

class KvmVm;

class KvmSystem {
 public:
  // Opens /dev/kvm (or `path`) and checks KVM_GET_API_VERSION == 12.
  static Result<KvmSystem> open(const char* path = "/dev/kvm");

  // KVM_CHECK_EXTENSION on the system fd; 0 when absent.
  int check_extension(int cap) const;
  Result<size_t> vcpu_mmap_size() const;
  // KVM_GET_SUPPORTED_CPUID: every leaf KVM can present to a guest.
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  // KVM_GET_MSR_INDEX_LIST.
  Result<std::vector<uint32_t>> msr_index_list() const;
  Result<KvmVm> create_vm() const;

  int fd() const { return fd_.get(); }

 private:
  explicit KvmSystem(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace petrel

// KvmMsiController: MSI vectors delivered by KVM (api.rst 4.75 KVM_IRQFD, 4.52
// KVM_SET_GSI_ROUTING). Each vector owns a GSI from the GsiRouter and an EventFd registered
// as irqfd on it: set_route points the GSI's MSI route at the message, trigger signals the
// EventFd and KVM injects the MSI without a VMM round trip.
//
// Lifetimes: the KvmVm outlives the vectors. The GsiRouter should too; a vector that outlives
// it (a PCI transport kept alive by a bus during teardown) stops using it: dropping the
// vector then only deassigns its irqfd. Dropping a vector deassigns its irqfd and frees its
// GSI. The controller itself holds no state the vectors need.
// Thread affinity: allocate_vector at VM build; vectors as MsiVector says (any thread).
#pragma once

#include "devices/msi_controller.h"
#include "vmm/base/kvm_vm.h"
#include "vmm/gsi_router.h"

namespace petrel {

class KvmMsiController final : public MsiController {
 public:
  KvmMsiController(const KvmVm& vm, GsiRouter& router) : vm_(vm), router_(router) {}

  Result<std::unique_ptr<MsiVector>> allocate_vector() override;

 private:
  const KvmVm& vm_;
  GsiRouter& router_;
};

}  // namespace petrel

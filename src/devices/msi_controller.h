// MsiController: hands out MSI vectors to devices (MSI-X tables). The KVM implementation
// (src/vmm/kvm_msi_controller.h) gives every vector its own GSI, MSI route and irqfd; unit
// tests use a recording fake.
//
// Thread affinity: allocate_vector is called while the VM is built (one thread); the vectors
// it returns follow MsiVector's rules. The controller must outlive every vector it returned.
#pragma once

#include <memory>

#include "devices/msi_vector.h"
#include "vmm/base/result.h"

namespace petrel {

class MsiController {
 public:
  virtual ~MsiController() = default;
  // Fails when the interrupt routes are exhausted.
  virtual Result<std::unique_ptr<MsiVector>> allocate_vector() = 0;
};

}  // namespace petrel

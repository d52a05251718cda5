// NetConfig: what the VMM builder tells a virtio-net device (no JSON here: src/vmm parses the
// user's configuration into this).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "virtio/mac_address.h"

namespace petrel::virtio {

struct NetConfig {
  // An existing TAP interface to attach to, or one to create; empty: petrel creates one
  // named by the kernel from "ptap%d".
  std::string tap_name;
  // nullopt: generated from vm_name and index (MacAddress::generate).
  std::optional<MacAddress> mac;
  // Offered as VIRTIO_NET_F_MTU and set on the TAP (SIOCSIFMTU); 68..65535.
  std::optional<uint16_t> mtu;
  std::string vm_name;
  unsigned index = 0;  // this NIC's position among the VM's NICs
};

}  // namespace petrel::virtio

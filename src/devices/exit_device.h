// ExitDevice: the debug-exit port of guest_abi.h (PETREL_PORT_EXIT, registered 4 ports
// wide). A guest write of any width stops the VM; the low byte of the written value
// (guest-controlled) is the exit status. Reads return 0.
//
// Thread affinity: read/write run on vCPU threads. Only the first write, over all vCPUs,
// calls the callback; later writes are ignored.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "devices/bus_device.h"

namespace petrel {

class ExitDevice : public BusDevice {
 public:
  static constexpr uint64_t kPortCount = 4;

  // `on_exit` runs on the writing vCPU thread, with no lock held; may be empty.
  explicit ExitDevice(std::function<void(uint8_t status)> on_exit);

  void read(uint64_t offset, std::span<std::byte> data) override;
  void write(uint64_t offset, std::span<const std::byte> data) override;

 private:
  const std::function<void(uint8_t status)> on_exit_;
  std::atomic<bool> fired_{false};
};

}  // namespace petrel

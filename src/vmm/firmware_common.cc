#include "vmm/firmware_common.h"

#include <fmt/format.h>

namespace petrel::firmware {

Result<void> check_vcpu_count(uint32_t vcpus) {
  if (vcpus == 0 || vcpus > kMaxVcpus) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} vCPUs: the firmware tables describe 1 to {} (xAPIC IDs)", vcpus,
                             kMaxVcpus));
  }
  return {};
}

uint8_t checksum_byte(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) {
    sum = static_cast<uint8_t>(sum + b);
  }
  return static_cast<uint8_t>(0x100 - sum);
}

}  // namespace petrel::firmware

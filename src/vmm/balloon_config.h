// The memory balloon's settings in a VmConfig (docs/config.md, "balloon"): the command line's
// --balloon option string and the JSON object share one parser. The device follows virtio 1.2
// section 5.5 "Traditional Memory Balloon Device"; sizes here are bytes, the device counts
// 4096-byte pages (5.5.6: "the balloon works in units of 4096 bytes").
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "vmm/base/result.h"
#include "vmm/device_config.h"

namespace petrel {

// virtio 1.2 5.5.6: page frame numbers and num_pages/actual count 4096-byte pages.
inline constexpr uint64_t kBalloonPageBytes = 4096;
// stats_interval_s: 0 (no polling) or 1 to an hour.
inline constexpr uint32_t kMaxBalloonStatsIntervalS = 3600;

struct BalloonSpec {
  // Memory the balloon takes from the guest at start, in bytes: a multiple of
  // kBalloonPageBytes and less than the guest's RAM (validate_config checks the latter).
  uint64_t target_bytes = 0;
  bool deflate_on_oom = true;                // offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM (5.5.3)
  uint32_t stats_interval_s = 5;             // how often to poll the stats queue; 0 = never
  bool free_page_reporting = false;          // offer VIRTIO_BALLOON_F_REPORTING (5.5.3)
  std::optional<VirtioTransport> transport;  // unset: VmConfig::virtio_transport

  bool operator==(const BalloonSpec&) const = default;
};

// "target=SIZE,deflate_on_oom=on|off,stats_interval=DURATION,free_page_reporting=on|off,
// transport=mmio|pci", every key optional ("" is the defaults). SIZE as parse_size; DURATION as
// parse_duration_ms (plain digits are seconds) in whole seconds. Unknown, repeated and bad keys
// are refused with kInvalidArgument; messages name the key.
Result<BalloonSpec> parse_balloon_option(std::string_view text);

// The JSON form: true (the defaults) or an object {"target": SIZE string or integer bytes,
// "deflate_on_oom": bool, "stats_interval_s": integer, "free_page_reporting": bool,
// "transport": "mmio"|"pci"}. `field` names the value in errors ("balloon").
Result<BalloonSpec> balloon_from_json(const nlohmann::json& value, std::string_view field);
nlohmann::json to_json(const BalloonSpec& balloon);

// A balloon target against the guest's RAM (both bytes): a multiple of kBalloonPageBytes and
// below `memory_bytes` (the guest keeps some memory). kInvalidArgument otherwise.
Result<void> check_balloon_target(uint64_t target_bytes, uint64_t memory_bytes);

}  // namespace petrel

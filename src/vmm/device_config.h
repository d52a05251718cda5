// The virtio devices of a VmConfig: disks, NICs, the entropy device, and which transport
// (virtio-MMIO or virtio-PCI) each uses. Parsed from the command line's "key=value,..."
// option strings (--disk, --net, --rng) and from the JSON config (docs/config.md).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/result.h"

namespace petrel {

enum class VirtioTransport { kMmio, kPci };
// auto: io_uring when the host allows it, else synchronous system calls.
enum class DiskEngine { kAuto, kUring, kSync };

inline constexpr size_t kMaxDiskSerialLength = 20;  // virtio 1.2 5.2.6: GET_ID is 20 bytes
inline constexpr size_t kMaxTapNameLength = 15;     // IFNAMSIZ - 1
inline constexpr uint32_t kMinMtu = 68;
inline constexpr uint32_t kMaxMtu = 65535;
inline constexpr size_t kMaxDisks = 16;
inline constexpr size_t kMaxNets = 8;
// virtio-MMIO devices each need an IOAPIC line of their own (edge-triggered, not shared).
inline constexpr size_t kMaxVirtioMmioDevices = 16;

struct DiskSpec {
  std::filesystem::path path;  // a raw image file
  bool read_only = false;
  std::string serial;  // empty: derived from the path; at most 20 printable ASCII characters
  DiskEngine engine = DiskEngine::kAuto;
  std::optional<VirtioTransport> transport;  // unset: VmConfig::virtio_transport

  bool operator==(const DiskSpec&) const = default;
};

struct NetSpec {
  std::string tap;  // an existing TAP interface to attach, or the name to create; empty: petrel
                    // creates one with a kernel-chosen name
  std::string mac;  // "xx:xx:xx:xx:xx:xx" lowercase unicast; empty: generated from the VM name
  std::optional<uint32_t> mtu;  // kMinMtu..kMaxMtu
  std::optional<VirtioTransport> transport;

  bool operator==(const NetSpec&) const = default;
};

struct RngSpec {
  std::optional<VirtioTransport> transport;

  bool operator==(const RngSpec&) const = default;
};

// Option strings: "path=FILE,readonly=on,serial=S,engine=uring,transport=pci" (a bare first
// item without '=' is the path), "tap=NAME,mac=..,mtu=N,transport=..", and for --rng "" or
// "transport=..". Unknown keys, repeated keys and bad values are refused; messages name the key.
Result<DiskSpec> parse_disk_option(std::string_view text);
Result<NetSpec> parse_net_option(std::string_view text);
Result<RngSpec> parse_rng_option(std::string_view text);

// JSON forms (docs/config.md). `field` names the value in errors, e.g. "disks[1]".
Result<DiskSpec> disk_from_json(const nlohmann::json& value, std::string_view field);
Result<NetSpec> net_from_json(const nlohmann::json& value, std::string_view field);
Result<RngSpec> rng_from_json(const nlohmann::json& value, std::string_view field);
Result<VirtioTransport> parse_virtio_transport(std::string_view text);
nlohmann::json to_json(const DiskSpec& disk);
nlohmann::json to_json(const NetSpec& net);
nlohmann::json to_json(const RngSpec& rng);

// A MAC address "xx:xx:xx:xx:xx:xx" (hex, either case): nullopt when malformed, otherwise
// the six bytes. Multicast addresses are refused by the callers above.
std::optional<std::array<uint8_t, 6>> parse_mac(std::string_view text);

std::string_view to_string(VirtioTransport transport);
std::string_view to_string(DiskEngine engine);

}  // namespace petrel

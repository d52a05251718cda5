// VmConfig: everything `petrel run` needs to build a VM, plus its JSON config file format
// (docs/config.md) and the checks shared by the file parser and the command line (cli.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/balloon_config.h"
#include "vmm/base/result.h"
#include "vmm/device_config.h"
#include "vmm/privileges.h"

namespace petrel {

// Where COM1 is connected. kStdio: output to stdout, input from stdin. kFile: output to a file.
// kNone: output discarded. kSocket: a Unix stream socket petrel listens on; one client at a time
// gets the output and feeds the input (docs/config.md, "serial").
enum class SerialMode { kStdio, kFile, kNone, kSocket };

// The longest path a Unix socket address holds (sun_path is 108 bytes with its NUL).
inline constexpr size_t kMaxSocketPathLength = 107;

struct SerialConfig {
  SerialMode mode = SerialMode::kStdio;
  std::filesystem::path path;  // set only when mode is kFile or kSocket

  bool operator==(const SerialConfig&) const = default;
};

// kText on a stderr that systemd connected to the journal logs as kJournal (main.cc).
enum class LogFormat { kText, kJson, kJournal };

// What a guest-initiated reset does: rebuild the VM and boot again, or end petrel.
enum class RebootAction { kRestart, kExit };

inline constexpr uint32_t kMaxShutdownTimeoutMs = 3'600'000;

// kEmulated forces PVM's emulated mode on a PVM host; kAuto lets petrel pick.
enum class PvmMode { kAuto, kEmulated };

// The per-thread seccomp filters (src/vmm/seccomp_filter.h, docs/security.md): kOn traps a
// call outside a thread's allowlist and stops petrel, kLog only has the kernel log it.
enum class SeccompMode { kOn, kOff, kLog };
// Off under AddressSanitizer: its runtime's calls are not on the lists (docs/security.md).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr SeccompMode kDefaultSeccompMode = SeccompMode::kOff;
#else
inline constexpr SeccompMode kDefaultSeccompMode = SeccompMode::kOn;
#endif

inline constexpr uint64_t kMinMemoryBytes = 16ull << 20;
inline constexpr uint64_t kMaxMemoryBytes = 1ull << 40;
inline constexpr uint64_t kMemoryAlignment = 4096;
inline constexpr uint32_t kMinVcpus = 1;
inline constexpr uint32_t kMaxVcpus = 254;
inline constexpr size_t kMaxNameLength = 64;
inline constexpr size_t kMaxCmdlineLength = 4095;

struct VmConfig {
  std::string name = "petrel";           // [A-Za-z0-9._-]{1,64}
  std::filesystem::path kernel;          // required by validate_config; a readable regular file
  std::filesystem::path initrd;          // optional initial ramdisk (empty: none); as kernel
  std::string cmdline;                   // at most 4095 bytes, no NUL or newline
  uint64_t memory_bytes = 256ull << 20;  // kMinMemoryBytes..kMaxMemoryBytes, multiple of 4 KiB
  uint32_t vcpus = 1;                    // kMinVcpus..kMaxVcpus
  SerialConfig serial;
  std::string log_level = "info";  // trace|debug|info|warn|error|off
  LogFormat log_format = LogFormat::kText;
  PvmMode pvm_mode = PvmMode::kAuto;
  SeccompMode seccomp = kDefaultSeccompMode;  // a host setting, like log_format
  // virtio devices (device_config.h); placed in this order: disks, NICs, rng, balloon.
  std::vector<DiskSpec> disks;  // at most kMaxDisks
  std::vector<NetSpec> nets;    // at most kMaxNets
  std::optional<RngSpec> rng;
  std::optional<BalloonSpec> balloon;  // balloon_config.h; nullopt: no balloon device
  VirtioTransport virtio_transport = VirtioTransport::kMmio;  // for devices that do not say
  // Control plane (docs/api.md).
  std::filesystem::path api_socket;  // the API's Unix socket; empty: no API
  bool autostart = true;             // false: stay "created" until the API starts the guest
  RebootAction on_reboot = RebootAction::kRestart;
  uint32_t shutdown_timeout_ms = 30000;  // graceful shutdown's wait: 1..kMaxShutdownTimeoutMs
  std::optional<RunAs> run_as;  // drop to this user before the guest first runs (privileges.h)

  bool operator==(const VmConfig&) const = default;
};

// Parses a JSON config document (format: docs/config.md). Keys left out keep the VmConfig
// defaults; unknown keys, duplicate keys, wrong types and out-of-range values are refused with
// kInvalidArgument and a message naming the field ("config: field \"vcpus\": ..."). Relative
// paths are returned as written. Context-dependent checks (kernel present and readable, initrd
// readable, serial file's or socket's directory exists) are left to validate_config. Never throws.
Result<VmConfig> parse_config_json(std::string_view text);

// Reads and parses the config file `path`; relative paths inside it (kernel, initrd, serial.path)
// are resolved against the file's directory. Read failures are kNotFound/kIo; parse errors carry
// `path` as context. Does not call validate_config, so a file may leave out the kernel.
Result<VmConfig> load_config_file(const std::filesystem::path& path);

// Checks every field of a complete config, including that the kernel is given and readable and
// that the initrd, if set, is readable (kNotFound when missing). Messages name the field as
// parse_config_json does.
Result<void> validate_config(const VmConfig& config);

// The JSON form of `config`, accepted by parse_config_json (which returns an equal VmConfig).
nlohmann::json config_to_json(const VmConfig& config);

// Parses a size: decimal digits with an optional binary suffix K, M, G, T (also KiB, MiB, GiB,
// TiB, or B for bytes; case-insensitive), e.g. "256M", "2GiB", "1048576". Junk, an empty string
// and values above UINT64_MAX are refused with kInvalidArgument.
Result<uint64_t> parse_size(std::string_view text);

// The shortest exact form parse_size reads back: 256 MiB -> "256M", 4097 -> "4097".
std::string format_size(uint64_t bytes);

std::string_view to_string(SerialMode mode);
std::string_view to_string(LogFormat format);
std::string_view to_string(PvmMode mode);
std::string_view to_string(SeccompMode mode);     // "on", "off", "log"
std::string_view to_string(RebootAction action);  // "restart", "exit"

}  // namespace petrel

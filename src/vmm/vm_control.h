// VmControl: what the control plane (src/api/) may ask of one VM, as typed calls. The real
// implementation is VmController (vm_controller.h); tests and the API fuzz target use fakes.
//
// Thread affinity: every method may be called from any thread (the API thread in practice);
// implementations serialise actions internally. Nothing here knows HTTP or JSON text; event
// payloads are JSON values because they go to the API unchanged.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vmm/base/result.h"
#include "vmm/lifecycle.h"
#include "vmm/vm_config.h"

namespace petrel {

struct VmInfo {
  std::string name;
  VmState state = VmState::kCreated;
  uint32_t vcpus = 0;
  uint64_t memory_bytes = 0;
  // Since the guest last started (start or reboot); zero while created.
  std::chrono::nanoseconds uptime{0};
  // Wall-clock time of the last start; nullopt while created.
  std::optional<std::chrono::system_clock::time_point> started_at;
  uint32_t boot_count = 0;  // starts + reboots so far
  std::string exec_mode;    // "hardware", "PVM native", "PVM emulated"
  std::string version;      // petrel's version
  int pid = 0;              // petrel's process id
};

// Counters are monotonic for the life of one boot of the guest (a reboot rebuilds the devices
// and starts them from zero, which Prometheus reads as a counter reset).
struct VcpuMetrics {
  uint32_t id = 0;
  uint64_t cpu_time_ns = 0;  // CPU time of the vCPU thread (guest + VMM on its behalf)
  // Exits by reason name: "io", "mmio", "hlt", "intr", "system_event", "shutdown",
  // "internal_error", "fail_entry", "other"; every name present, zero or not.
  std::vector<std::pair<std::string, uint64_t>> exits;
};

struct DiskMetrics {
  std::string id;    // "disk0", "disk1", ... in config order
  std::string path;  // the backing file as configured
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  uint64_t read_ops = 0;
  uint64_t write_ops = 0;
  uint64_t flush_ops = 0;
  uint64_t discard_ops = 0;  // DISCARD and WRITE_ZEROES requests
  uint64_t errors = 0;       // requests completed with IOERR or UNSUPP
};

struct NetMetrics {
  std::string id;         // "net0", "net1", ... in config order
  std::string tap;        // the TAP interface name
  uint64_t rx_bytes = 0;  // host -> guest, frames delivered to the guest
  uint64_t rx_packets = 0;
  uint64_t rx_drops = 0;  // frames read from the TAP that could not be delivered
  uint64_t tx_bytes = 0;  // guest -> host
  uint64_t tx_packets = 0;
  uint64_t tx_drops = 0;  // guest frames refused or not written
};

// The balloon's counters for one boot of the guest (virtio 1.2 5.5: pages are 4096 bytes).
struct BalloonMetrics {
  uint64_t target = 0;                    // bytes the host asks the balloon to hold
  uint64_t actual = 0;                    // bytes the guest says it holds (config "actual")
  uint64_t inflated_pages_total = 0;      // PFNs given to the host on the inflate queue
  uint64_t deflated_pages_total = 0;      // PFNs taken back on the deflate queue
  uint64_t reported_pages_total = 0;      // pages of free page reports returned to the host
  uint64_t ignored_pfns_total = 0;        // guest PFNs outside guest RAM, ignored and logged
  uint64_t oom_deflated_pages_total = 0;  // pages the guest took back unasked (deflate on OOM)
};

struct VmMetrics {
  std::string name;  // the VM's name (the "vm" label in Prometheus output)
  VmState state = VmState::kCreated;
  std::chrono::nanoseconds uptime{0};
  uint64_t guest_memory_bytes = 0;  // configured guest RAM
  uint64_t host_rss_bytes = 0;      // petrel's resident set (/proc/self/statm)
  std::vector<VcpuMetrics> vcpus;
  std::vector<DiskMetrics> disks;
  std::vector<NetMetrics> nets;
  std::optional<BalloonMetrics> balloon;  // nullopt: the VM has no balloon
};

// One entry of the VM's event stream. `seq` starts at 1 and increases by one per event.
// Types and their `data`: "state" {"from","to","action"}, "reset" {"initiator": "guest"|
// "api"}, "panic" {"message"}, "device_error" {"device","message"}, "shutdown_timeout"
// {"timeout_ms"}.
struct VmEvent {
  uint64_t seq = 0;
  std::chrono::system_clock::time_point time;
  std::string type;
  nlohmann::json data = nlohmann::json::object();
};

// A subscription to the event stream; destroying it unsubscribes. The callback runs on the
// thread that published the event, after the event is recorded; it must not block or call
// back into VmControl (post to your own thread instead).
class EventSubscription {
 public:
  virtual ~EventSubscription() = default;
};

struct ShutdownOptions {
  // How long the guest gets to power off before petrel stops it hard; nullopt: the VM's
  // configured shutdown_timeout_ms.
  std::optional<std::chrono::milliseconds> timeout;
};

// Snapshot, restore and live migration. Paths and destinations come from API clients; the
// API layer checks their shape (absolute paths, "unix:"/"tcp:" prefixes, ranges), the
// controller everything else.

struct SnapshotRequest {
  // A directory; created if absent, must be empty or an earlier petrel snapshot (then
  // replaced).
  std::filesystem::path path;
};

struct SnapshotResult {
  std::filesystem::path path;
  uint64_t memory_bytes_written = 0;  // guest RAM bytes actually written (the file is sparse)
  uint64_t state_bytes = 0;           // size of the state file
  std::chrono::milliseconds duration{0};
};

struct RestoreRequest {
  std::filesystem::path path;  // a snapshot directory
  bool paused = false;         // leave the restored VM paused instead of running it
};

struct MigrateSendRequest {
  std::string destination;                  // "unix:PATH" | "tcp:HOST:PORT"
  std::chrono::milliseconds downtime{300};  // the stop-and-copy phase's target length
  std::chrono::milliseconds timeout{600000};
  uint32_t max_rounds = 30;  // pre-copy rounds before stop-and-copy regardless
};

struct MigrateReceiveRequest {
  std::string listen;  // "unix:PATH" | "tcp:HOST:PORT"
  std::chrono::milliseconds timeout{600000};
};

enum class MigrationRole { kNone, kSend, kReceive };

enum class MigrationPhase {
  kIdle,
  kListening,
  kConnecting,
  kPrecopy,
  kStopAndCopy,
  kCompleted,
  kFailed,
  kCancelled,
};

// "none", "send", "receive".
constexpr std::string_view to_string(MigrationRole role) {
  switch (role) {
    case MigrationRole::kSend:
      return "send";
    case MigrationRole::kReceive:
      return "receive";
    case MigrationRole::kNone:
      break;
  }
  return "none";
}

// "idle", "listening", "connecting", "precopy", "stop-and-copy", "completed", "failed",
// "cancelled".
constexpr std::string_view to_string(MigrationPhase phase) {
  switch (phase) {
    case MigrationPhase::kListening:
      return "listening";
    case MigrationPhase::kConnecting:
      return "connecting";
    case MigrationPhase::kPrecopy:
      return "precopy";
    case MigrationPhase::kStopAndCopy:
      return "stop-and-copy";
    case MigrationPhase::kCompleted:
      return "completed";
    case MigrationPhase::kFailed:
      return "failed";
    case MigrationPhase::kCancelled:
      return "cancelled";
    case MigrationPhase::kIdle:
      break;
  }
  return "idle";
}

// The current (or last) migration of this VM; role kNone / phase kIdle when there was none.
struct MigrationStatus {
  MigrationRole role = MigrationRole::kNone;
  MigrationPhase phase = MigrationPhase::kIdle;
  std::string peer;              // the destination (send) or the connected source (receive)
  uint32_t round = 0;            // pre-copy round, from 1
  uint64_t bytes_sent = 0;       // bytes received, for kReceive
  uint64_t pages = 0;            // guest pages transferred
  uint64_t remaining_bytes = 0;  // dirty guest memory still to send (estimate)
  uint64_t dirty_rate_bytes_per_s = 0;
  uint64_t bandwidth_bytes_per_s = 0;
  uint64_t expected_downtime_ms = 0;
  std::chrono::milliseconds elapsed{0};               // since the migration started
  std::optional<std::chrono::milliseconds> total;     // set when completed
  std::optional<std::chrono::milliseconds> downtime;  // set when completed
  std::string error;                                  // set when failed or cancelled
};

// The balloon as the host sees it (sizes in bytes).
struct BalloonInfo {
  bool present = false;           // false: the VM has no balloon (the API answers 404)
  uint64_t target_bytes = 0;      // what the host asks the guest to give (num_pages * 4096)
  uint64_t actual_bytes = 0;      // what the guest has given (its "actual" field * 4096)
  uint64_t memory_bytes = 0;      // guest RAM
  bool deflate_on_oom = false;    // VIRTIO_BALLOON_F_DEFLATE_ON_OOM offered
  uint32_t stats_interval_s = 0;  // stats polling period; 0 = off
  bool free_page_reporting = false;
};

// The guest's last statistics (virtio 1.2 5.5.6.3). Every value is guest-controlled and only
// informative; nullopt for a tag the guest did not send. Bytes: swap_in, swap_out,
// free_memory, total_memory, available_memory, disk_caches. Counts: major_faults,
// minor_faults, hugetlb_allocations, hugetlb_failures.
struct BalloonStats {
  std::optional<uint64_t> swap_in;              // VIRTIO_BALLOON_S_SWAP_IN (0)
  std::optional<uint64_t> swap_out;             // VIRTIO_BALLOON_S_SWAP_OUT (1)
  std::optional<uint64_t> major_faults;         // VIRTIO_BALLOON_S_MAJFLT (2)
  std::optional<uint64_t> minor_faults;         // VIRTIO_BALLOON_S_MINFLT (3)
  std::optional<uint64_t> free_memory;          // VIRTIO_BALLOON_S_MEMFREE (4)
  std::optional<uint64_t> total_memory;         // VIRTIO_BALLOON_S_MEMTOT (5)
  std::optional<uint64_t> available_memory;     // VIRTIO_BALLOON_S_AVAIL (6)
  std::optional<uint64_t> disk_caches;          // VIRTIO_BALLOON_S_CACHES (7)
  std::optional<uint64_t> hugetlb_allocations;  // VIRTIO_BALLOON_S_HTLB_PGALLOC (8)
  std::optional<uint64_t> hugetlb_failures;     // VIRTIO_BALLOON_S_HTLB_PGFAIL (9)
  // When the guest last answered the stats queue; nullopt: never yet.
  std::optional<std::chrono::system_clock::time_point> updated_at;
  uint64_t unknown_tags = 0;  // entries of the last answer with a tag not listed above
};

class VmControl {
 public:
  virtual ~VmControl() = default;

  virtual VmInfo info() const = 0;
  // The effective configuration, complete enough to start the same VM again (vm_config.h
  // config_to_json format).
  virtual nlohmann::json config() const = 0;
  virtual VmMetrics metrics() const = 0;

  // Actions. Each returns the state the VM is in once the action took effect, or kState
  // ("cannot pause: the VM is paused") with nothing changed when the lifecycle table does not
  // allow it in the current state. shutdown() returns as soon as the guest was asked
  // (kShuttingDown); the rest return once done.
  virtual Result<VmState> start() = 0;
  virtual Result<VmState> pause() = 0;
  virtual Result<VmState> resume() = 0;
  virtual Result<VmState> shutdown(const ShutdownOptions& options) = 0;
  virtual Result<VmState> reboot() = 0;
  virtual Result<VmState> stop() = 0;

  // Events with seq > `after` still in the history (the last kEventHistory) are passed to
  // `callback` at once, on this thread, in order; later ones as they happen. `after` =
  // UINT64_MAX means "only new events".
  static constexpr size_t kEventHistory = 1024;
  virtual std::unique_ptr<EventSubscription> subscribe(
      uint64_t after, std::function<void(const VmEvent&)> callback) = 0;

  // Writes a snapshot of the VM (which must be paused, else kState) to request.path.
  virtual Result<SnapshotResult> snapshot(const SnapshotRequest& request) = 0;
  // Builds the VM from a snapshot; only on a petrel started without a VM (`petrel serve`),
  // else kState.
  virtual Result<void> restore(const RestoreRequest& request) = 0;
  // Starts sending the VM to request.destination and returns; progress via
  // migration_status(). kState when the VM is not running or paused, or a migration is active.
  virtual Result<void> migrate_send(const MigrateSendRequest& request) = 0;
  // Starts listening for an incoming VM and returns; kState when not possible now.
  virtual Result<void> migrate_receive(const MigrateReceiveRequest& request) = 0;
  virtual MigrationStatus migration_status() const = 0;
  // Cancels the active migration; kState when none is active.
  virtual Result<void> migrate_cancel() = 0;

  // The balloon (docs/api.md, /v1/balloon). kNotFound when the VM has no balloon; kState when
  // there is no VM to ask.
  virtual Result<BalloonInfo> balloon() const = 0;
  // Asks the guest to hold `target_bytes` in its balloon and returns without waiting for it.
  // kInvalidArgument for a target that is not a multiple of 4 KiB or not below guest RAM;
  // kNotFound without a balloon; kState when the VM cannot take it now.
  virtual Result<void> set_balloon_target(uint64_t target_bytes) = 0;
  // The guest's last statistics; errors as balloon().
  virtual Result<BalloonStats> balloon_stats() const = 0;
};

}  // namespace petrel

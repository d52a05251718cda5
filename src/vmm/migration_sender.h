// MigrationSender: the source side of a pre-copy live migration (protocol v1,
// docs/migration.md). It connects, shakes hands, sends the config, then memory in rounds:
// round 0 every page that is neither all-zero nor skipped, each later round the pages dirtied
// during the previous one, until the dirty set could be sent within the target downtime (at
// the last round's bandwidth) or max_rounds pre-copy rounds have run. Then it pauses the
// source, sends the last dirty pages and the final state, and waits for the destination's
// ACK. Downtime is measured from pause() to the ACK.
//
// Until the ACK the source owns the guest: any failure (connection lost, timeout, cancel, a
// refusal or protocol error from the peer) stops dirty logging, resumes the source if it was
// paused, tells the peer (ERROR or CANCEL, best effort) and returns the error with the phase
// and round in its context. After the ACK the source stays paused; its owner ends it. If the
// connection breaks after the destination committed but before its ACK arrives, both sides
// have a guest: the source resumes, so the destination's owner must not start a guest it
// could not acknowledge (the classic two-generals gap; see docs/migration.md).
//
// Threads: run() on one thread (the migration thread), once per object; progress() and
// cancel() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "vmm/base/result.h"
#include "vmm/migration_address.h"
#include "vmm/migration_channel.h"
#include "vmm/migration_source.h"
#include "vmm/vm_control.h"

namespace petrel {

// MigrationPhase and its to_string are the API's (vm_control.h).

struct MigrationOptions {
  std::chrono::milliseconds downtime{300};    // target for the stop-and-copy phase
  uint32_t max_rounds = 30;                   // pre-copy rounds (round 0 included), >= 1
  std::chrono::milliseconds timeout{600000};  // the whole migration, handshake to ACK
  uint64_t bandwidth_limit = 0;               // bytes per second; 0 = unlimited
};

struct MigrationResult {
  std::chrono::milliseconds total{0};     // connect to ACK
  std::chrono::milliseconds downtime{0};  // pause to ACK
  uint32_t rounds = 0;                    // pre-copy rounds + the final round
  uint64_t bytes_sent = 0;                // every byte written to the socket
  uint64_t pages_sent = 0;
};

struct MigrationProgress {
  MigrationPhase phase = MigrationPhase::kIdle;
  uint32_t round = 0;
  uint64_t bytes_sent = 0;
  uint64_t pages_sent = 0;
  uint64_t remaining_dirty_bytes = 0;   // dirty after the last completed round
  uint64_t dirty_rate_bytes_per_s = 0;  // dirtied during the last round / its duration
  uint64_t bandwidth_bytes_per_s = 0;   // sent during the last round / its duration
  uint64_t expected_downtime_ms = 0;    // remaining_dirty_bytes / bandwidth
  std::chrono::milliseconds elapsed{0};
};

class MigrationSender {
 public:
  MigrationSender() = default;
  MigrationSender(const MigrationSender&) = delete;
  MigrationSender& operator=(const MigrationSender&) = delete;

  // The whole migration, blocking. A second call is refused with kState.
  Result<MigrationResult> run(MigrationSource& source, const MigrationAddress& address,
                              const MigrationOptions& options);
  MigrationProgress progress() const;
  // Makes run() give up promptly (kIo ECANCELED, see is_migration_cancelled) unless it has
  // already received the ACK.
  void cancel();

 private:
  class Session;
  friend class Session;

  void set_channel(MigrationChannel* channel);
  template <typename F>
  void update(F&& f) {
    std::lock_guard lock(mutex_);
    f(progress_);
  }

  std::atomic<bool> cancelled_{false};
  std::atomic<bool> used_{false};
  mutable std::mutex mutex_;
  MigrationProgress progress_;                     // guarded by mutex_
  MigrationChannel* channel_ = nullptr;            // guarded by mutex_; the live connection
  std::chrono::steady_clock::time_point started_;  // guarded by mutex_
};

}  // namespace petrel

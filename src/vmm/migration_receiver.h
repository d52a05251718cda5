// MigrationReceiver: the destination side of a live migration (protocol v1,
// docs/migration.md). It answers the HELLO (refusing another protocol version with an ERROR
// naming both), builds the VM through sink.prepare() from the CONFIG, copies each MEMORY
// frame into the sink's guest memory, and on DONE restores the STATE through sink.commit()
// and answers ACK.
//
// Everything received is UNTRUSTED: frames are bounded by MigrationChannel, payloads checked
// by migration_protocol.h, page runs checked against the layout before any byte is copied,
// rounds must arrive in order and STATE once before DONE. Any failure, a timeout or cancel()
// discards the sink (if prepare() was reached), tells the source (ERROR or CANCEL, best
// effort) and returns the error.
//
// Threads: run() on one thread, once per object; cancel() and progress() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"
#include "vmm/migration_address.h"
#include "vmm/migration_channel.h"
#include "vmm/migration_sender.h"
#include "vmm/migration_sink.h"

namespace petrel {

struct MigrationReceiveResult {
  std::chrono::milliseconds total{0};  // HELLO to ACK
  uint32_t rounds = 0;                 // ROUND_END frames received
  uint64_t bytes_received = 0;
  uint64_t pages_received = 0;
};

struct MigrationReceiveProgress {
  MigrationPhase phase = MigrationPhase::kIdle;  // kPrecopy also covers the final round
  uint32_t round = 0;
  uint64_t bytes_received = 0;
  uint64_t pages_received = 0;
  std::chrono::milliseconds elapsed{0};  // since the source connected
};

class MigrationReceiver {
 public:
  MigrationReceiver() = default;
  MigrationReceiver(const MigrationReceiver&) = delete;
  MigrationReceiver& operator=(const MigrationReceiver&) = delete;

  // Receives one migration on the connected socket `fd`; `timeout` bounds the whole run.
  Result<MigrationReceiveResult> run(MigrationSink& sink, UniqueFd fd,
                                     std::chrono::milliseconds timeout);
  // Accepts one connection on `listener` first (within the same `timeout`).
  Result<MigrationReceiveResult> run(MigrationSink& sink, MigrationListener& listener,
                                     std::chrono::milliseconds timeout);
  MigrationReceiveProgress progress() const;
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
  MigrationReceiveProgress progress_;              // guarded by mutex_
  MigrationChannel* channel_ = nullptr;            // guarded by mutex_
  std::chrono::steady_clock::time_point started_;  // guarded by mutex_; set by run()
};

}  // namespace petrel

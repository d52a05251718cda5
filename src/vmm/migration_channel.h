// MigrationChannel: typed, length-prefixed frames over a connected stream socket (the byte
// layout is docs/migration.md "Framing"): u32 type, u32 flags (0), u64 payload length, then the
// payload; integers little-endian.
//
// The peer is UNTRUSTED: recv_frame refuses an unknown type, non-zero flags and a length over
// the type's limit (kMaxFramePayload) before it allocates anything.
//
// Threads: one thread (the sender's or receiver's) makes every send/recv call; cancel() may be
// called from any other thread while the channel lives and makes a blocked or later call fail
// with is_migration_cancelled() within a poll wake-up. Byte counters are atomics.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/base/event_fd.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

enum class FrameType : uint32_t {
  kHello = 1,     // source -> dest
  kHelloAck = 2,  // dest -> source
  kError = 3,     // either way: UTF-8 text, then the sender gives up
  kConfig = 4,    // source -> dest
  kReady = 5,     // dest -> source
  kMemory = 6,    // source -> dest
  kRoundEnd = 7,  // source -> dest
  kState = 8,     // source -> dest
  kDone = 9,      // source -> dest
  kAck = 10,      // dest -> source
  kCancel = 11,   // either way: the sender gives up
};

inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr uint32_t kMaxFrameType = 11;

// The name of a frame type ("MEMORY"), or "type N" for an unknown one.
std::string frame_type_name(uint32_t type);
// The largest payload a frame of `type` may carry (bytes).
uint64_t max_frame_payload(FrameType type);

class MigrationChannel {
 public:
  static Result<MigrationChannel> create(UniqueFd fd);

  MigrationChannel(MigrationChannel&&) noexcept = default;
  MigrationChannel& operator=(MigrationChannel&&) = delete;
  MigrationChannel(const MigrationChannel&) = delete;
  MigrationChannel& operator=(const MigrationChannel&) = delete;

  // Sends one frame whose payload is the concatenation of `parts` (gathered with sendmsg, so
  // page data goes from guest memory to the socket without a copy). The caller keeps the
  // parts' memory alive and still for the call. Refuses a payload over the type's limit.
  Result<void> send_pages(FrameType type, std::span<const iovec> parts,
                          std::chrono::milliseconds timeout);
  Result<void> send_frame(FrameType type, std::span<const std::byte> payload,
                          std::chrono::milliseconds timeout);
  // Best effort, on the owning thread, when giving up (ERROR or CANCEL): sends even after
  // cancel(), with a 1 s limit, and does nothing when an earlier send broke off mid-frame.
  void send_farewell(FrameType type, std::string_view text);

  // Receives one frame into `payload` (resized; its capacity is reused) and returns its type.
  // A closed connection is kIo ECONNRESET "connection closed by peer".
  Result<FrameType> recv_frame(std::vector<std::byte>& payload, std::chrono::milliseconds timeout);

  // True when a frame (or EOF) is waiting to be read: the peer spoke while we were sending.
  bool has_input() const;

  // Any thread: every current and later call fails with is_migration_cancelled().
  void cancel();
  bool cancelled() const { return flags_->cancelled.load(); }

  uint64_t bytes_sent() const { return flags_->sent.load(std::memory_order_relaxed); }
  uint64_t bytes_received() const { return flags_->received.load(std::memory_order_relaxed); }
  int fd() const { return fd_.get(); }

 private:
  // Heap-allocated so that the channel can move while another thread holds a pointer.
  struct Shared {
    std::atomic<bool> cancelled{false};
    std::atomic<uint64_t> sent{0};
    std::atomic<uint64_t> received{0};
  };
  using Deadline = std::chrono::steady_clock::time_point;

  MigrationChannel(UniqueFd fd, EventFd wake);
  Result<void> wait(short events, Deadline deadline, bool honour_cancel);
  Result<void> write_all(std::vector<iovec> iov, Deadline deadline, bool honour_cancel);
  Result<void> read_exact(std::byte* out, size_t len, Deadline deadline);

  UniqueFd fd_;
  EventFd wake_;  // signalled by cancel()
  std::unique_ptr<Shared> flags_;
  // A frame was cut off (or refused) in that direction: the byte stream is out of step.
  bool send_broken_ = false;
  bool recv_broken_ = false;
};

}  // namespace petrel

// Where a live migration goes: "unix:PATH" (a Unix stream socket) or "tcp:HOST:PORT" (HOST a
// name, an IPv4 literal or a bracketed IPv6 literal, "[::1]:4444"), the socket that connects
// there, and the destination's listening socket.
//
// Sockets are blocking, close-on-exec stream sockets with large buffers (pages flow in
// multi-MiB frames); timeouts come from poll(), not from SO_RCVTIMEO. Nagle stays on
// (TCP_NODELAY unset): the stream is bulk data.
//
// Thread-safety: MigrationListener is used by one thread; `cancel` may be set from any thread
// and is polled every kCancelPollInterval.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

struct MigrationAddress {
  enum class Kind { kUnix, kTcp };

  Kind kind = Kind::kUnix;
  std::string path;   // kUnix: the socket path
  std::string host;   // kTcp: a name or an address literal, without brackets
  uint16_t port = 0;  // kTcp; 0 only for a listener (the kernel picks one)

  // "unix:PATH" or "tcp:HOST:PORT" ("tcp:[V6]:PORT" when HOST contains a colon).
  std::string to_string() const;
};

inline constexpr std::chrono::milliseconds kCancelPollInterval{50};

// ErrorCode has no "timed out" or "cancelled": a migration reports them as kIo with sys_errno
// ETIMEDOUT / ECANCELED, and callers test them with these helpers.
Error migration_timeout_error(std::string_view what);
Error migration_cancelled_error(std::string_view what);
bool is_migration_timeout(const Error& error);
bool is_migration_cancelled(const Error& error);
// SO_SNDBUF / SO_RCVBUF asked for (the kernel caps them at net.core.[rw]mem_max).
inline constexpr int kMigrationSocketBuffer = 4 << 20;

// Parses a user-given address; refuses an empty path, a missing or non-numeric port, a port
// over 65535, and an unbracketed IPv6 literal.
Result<MigrationAddress> parse_migration_address(std::string_view text);

// Connects to `addr` within `timeout` (every resolved address of a TCP host is tried in turn
// within the same deadline). Errors: kIo with sys_errno ETIMEDOUT on timeout, ECANCELED when
// `cancel` became true, otherwise the connect error.
Result<UniqueFd> connect(const MigrationAddress& addr, std::chrono::milliseconds timeout,
                         const std::atomic<bool>* cancel = nullptr);

class MigrationListener {
 public:
  // Unix: refuses a path a live process listens on, replaces a stale socket file, creates
  // the socket with mode 0600 and unlinks it at destruction. TCP: SO_REUSEADDR; port 0 binds
  // an ephemeral port, which address() then reports.
  static Result<MigrationListener> listen(const MigrationAddress& addr);

  MigrationListener(MigrationListener&& other) noexcept;
  MigrationListener& operator=(MigrationListener&&) = delete;
  MigrationListener(const MigrationListener&) = delete;
  MigrationListener& operator=(const MigrationListener&) = delete;
  ~MigrationListener();

  // Waits up to `timeout` for one connection and returns it (blocking mode). Errors as
  // connect(): ETIMEDOUT, ECANCELED.
  Result<UniqueFd> accept(std::chrono::milliseconds timeout,
                          const std::atomic<bool>* cancel = nullptr);

  // The bound address (for TCP with the actual port).
  const MigrationAddress& address() const { return addr_; }

 private:
  MigrationListener(MigrationAddress addr, UniqueFd fd)
      : addr_(std::move(addr)), fd_(std::move(fd)) {}

  MigrationAddress addr_;
  UniqueFd fd_;  // non-blocking listening socket
};

}  // namespace petrel

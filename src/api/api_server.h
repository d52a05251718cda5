// ApiServer: the control API's HTTP/1.1 server on a Unix stream socket (`curl --unix-socket`).
//
// - The socket is created at `path` with mode 0600 from the moment it exists. A socket file
//   already at `path` is removed first if nobody listens on it (stale); a live listener or
//   anything that is not a socket makes create() fail. `path` is unlinked on destruction if
//   the file there is still the one this server bound.
// - Each connection is an ApiSession (api_session.h: keep-alive, body limit, timeouts); at
//   most limits.max_sessions at once, a connection beyond that is answered 503
//   "too_many_sessions" and closed. The peer's credentials (SO_PEERCRED) are logged: at info
//   for the first connection of each user id, at debug for every connection.
// - Requests go to the Router, which is shared and must not change once the server exists.
// - Connections, responses and event streams are counted in `counters` (a private instance
//   when none is given), which the metrics routes may share.
//
// Thread affinity: create() and start() run on the owning thread before the loop runs, or on
// the loop thread (the thread running `io`, which the caller provides and runs). After
// start(), destruction happens on the loop thread, or on any thread once the loop no longer
// runs. Destruction closes the listener and every live session; a streaming response gets its
// terminating chunk if the socket takes it at once, and its producer is destroyed (so e.g. an
// event subscription ends before the server's destructor returns).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "api/api_counters.h"
#include "api/api_session.h"
#include "api/router.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

class ApiServer {
 public:
  // Errors: kInvalidArgument for a bad path, something other than a socket at it, or a
  // process listening on it; kIo when a system call fails.
  static Result<std::unique_ptr<ApiServer>> create(boost::asio::io_context& io,
                                                   const std::filesystem::path& path,
                                                   std::shared_ptr<const Router> router,
                                                   ApiLimits limits = {},
                                                   std::shared_ptr<ApiCounters> counters = nullptr);
  // Serves an already listening Unix stream socket (socket activation: systemd made it and
  // keeps its path; the server never unlinks it). `listener` must be non-blocking.
  static Result<std::unique_ptr<ApiServer>> adopt(boost::asio::io_context& io, UniqueFd listener,
                                                  std::shared_ptr<const Router> router,
                                                  ApiLimits limits = {},
                                                  std::shared_ptr<ApiCounters> counters = nullptr);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Starts accepting connections. Call once.
  void start();

  const std::filesystem::path& path() const { return path_; }

  // Use create(); public only for std::make_unique.
  ApiServer(boost::asio::io_context& io, std::filesystem::path path,
            std::shared_ptr<const Router> router, ApiLimits limits,
            std::shared_ptr<ApiCounters> counters);

 private:
  void accept_next();
  void log_peer(int peer_fd);

  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::filesystem::path path_;
  std::shared_ptr<const Router> router_;
  ApiLimits limits_;
  std::shared_ptr<ApiCounters> counters_;
  std::vector<std::weak_ptr<ApiSession>> sessions_;  // live ones are pruned on each accept
  // Set by a successful start(): pending accept handlers find it false after destruction.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool bound_ = false;
  std::vector<uid_t> seen_uids_;  // loop thread only
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
};

}  // namespace petrel

#include "api/api_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/api_error.h"
#include "vmm/base/unique_fd.h"
#include "vmm/base/unix_listener.h"

namespace petrel {
namespace {

using boost::asio::local::stream_protocol;

constexpr int kListenBacklog = 16;

Error socket_error(const std::filesystem::path& path, std::string_view what, int err) {
  return Error::from_errno(fmt::format("api socket {}: {}", path.string(), what), err);
}

}  // namespace

ApiServer::ApiServer(boost::asio::io_context& io, std::filesystem::path path,
                     std::shared_ptr<const Router> router, ApiLimits limits,
                     std::shared_ptr<ApiCounters> counters)
    : acceptor_(io),
      path_(std::move(path)),
      router_(std::move(router)),
      limits_(limits),
      counters_(counters ? std::move(counters) : std::make_shared<ApiCounters>()) {}

Result<std::unique_ptr<ApiServer>> ApiServer::create(boost::asio::io_context& io,
                                                     const std::filesystem::path& path,
                                                     std::shared_ptr<const Router> router,
                                                     ApiLimits limits,
                                                     std::shared_ptr<ApiCounters> counters) {
  if (!router) {
    return Error(ErrorCode::kInvalidArgument, "api socket: no router");
  }
  auto server =
      std::make_unique<ApiServer>(io, path, std::move(router), limits, std::move(counters));
  PETREL_TRY_ASSIGN(UniqueFd listener, listen_unix_socket(path, "api socket", kListenBacklog));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return socket_error(path, "lstat after bind", err);
  }
  server->bound_ = true;
  server->socket_dev_ = st.st_dev;
  server->socket_ino_ = st.st_ino;
  boost::system::error_code ec;
  server->acceptor_.assign(stream_protocol(), listener.get(), ec);
  if (ec) {
    return Error(ErrorCode::kIo,
                 fmt::format("api socket {}: cannot poll: {}", path.string(), ec.message()));
  }
  listener.release();
  spdlog::info("api listening on {}", path.string());
  return server;
}

Result<std::unique_ptr<ApiServer>> ApiServer::adopt(boost::asio::io_context& io, UniqueFd listener,
                                                    std::shared_ptr<const Router> router,
                                                    ApiLimits limits,
                                                    std::shared_ptr<ApiCounters> counters) {
  if (!router) {
    return Error(ErrorCode::kInvalidArgument, "api socket: no router");
  }
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  std::filesystem::path path = "(unnamed)";
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
      len > offsetof(sockaddr_un, sun_path) && addr.sun_path[0] != '\0') {
    path = std::string(addr.sun_path, strnlen(addr.sun_path, sizeof(addr.sun_path)));
  }
  auto server =
      std::make_unique<ApiServer>(io, path, std::move(router), limits, std::move(counters));
  boost::system::error_code ec;
  server->acceptor_.assign(stream_protocol(), listener.get(), ec);
  if (ec) {
    return Error(ErrorCode::kIo, fmt::format("api socket {} (from systemd): cannot poll: {}",
                                             path.string(), ec.message()));
  }
  listener.release();
  spdlog::info("api listening on {} (socket from systemd)", path.string());
  return server;
}

ApiServer::~ApiServer() {
  *alive_ = false;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& weak : sessions_) {
    if (auto session = weak.lock()) {
      session->close();
    }
  }
  struct stat st {};
  if (bound_ && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
      st.st_ino == socket_ino_) {
    ::unlink(path_.c_str());
  }
}

void ApiServer::start() {
  accept_next();
}

void ApiServer::accept_next() {
  acceptor_.async_accept(
      [this, alive = alive_](boost::system::error_code ec, stream_protocol::socket peer) {
        if (!*alive) {
          return;
        }
        if (ec == boost::asio::error::operation_aborted) {
          return;
        }
        if (ec) {
          // EMFILE and friends: keep serving the connections we have, try again on the next one.
          spdlog::warn("api socket {}: accept failed: {}", path_.string(), ec.message());
          accept_next();
          return;
        }
        log_peer(peer.native_handle());
        std::erase_if(sessions_, [](const auto& weak) { return weak.expired(); });
        auto session = std::make_shared<ApiSession>(std::move(peer), router_, limits_, counters_);
        if (sessions_.size() >= limits_.max_sessions) {
          session->reject(error_response(
              503, "too_many_sessions",
              fmt::format("more than {} concurrent API connections", limits_.max_sessions)));
        } else {
          sessions_.push_back(session);
          session->start();
        }
        accept_next();
      });
}

void ApiServer::log_peer(int peer_fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(peer_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    spdlog::warn("api socket {}: connection with unknown credentials: {}", path_.string(),
                 std::strerror(errno));
    return;
  }
  if (std::find(seen_uids_.begin(), seen_uids_.end(), cred.uid) == seen_uids_.end()) {
    seen_uids_.push_back(cred.uid);
    spdlog::info("api: first connection from uid {} (pid {}, gid {})", cred.uid, cred.pid,
                 cred.gid);
  } else {
    spdlog::debug("api: connection from uid {} (pid {}, gid {})", cred.uid, cred.pid, cred.gid);
  }
}

}  // namespace petrel

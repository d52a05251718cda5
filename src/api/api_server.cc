#include "api/api_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/api_error.h"
#include "vmm/base/unique_fd.h"

namespace petrel {
namespace {

using boost::asio::local::stream_protocol;

constexpr int kListenBacklog = 16;
constexpr std::size_t kMaxPathLength = sizeof(sockaddr_un::sun_path) - 1;

Error socket_error(const std::filesystem::path& path, std::string_view what, int err) {
  return Error::from_errno(fmt::format("api socket {}: {}", path.string(), what), err);
}

Result<sockaddr_un> socket_address(const std::filesystem::path& path) {
  const std::string& text = path.native();
  if (text.empty() || text.size() > kMaxPathLength) {
    return Error(
        ErrorCode::kInvalidArgument,
        fmt::format("api socket {}: the path must be 1 to {} bytes", text, kMaxPathLength));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, text.data(), text.size());
  return addr;
}

// Clears `path` for bind(): nothing there, or a socket nobody listens on (removed).
// (Same policy as the console socket, vmm/serial_socket.cc.)
Result<void> remove_stale_socket(const std::filesystem::path& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return ok();
    }
    return socket_error(path, "lstat", errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument, path.string() + ": exists and is not a socket");
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe.valid()) {
    return socket_error(path, "socket", errno);
  }
  // Non-blocking: a listener with a full backlog answers EAGAIN instead of making us wait.
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
      errno == EAGAIN) {
    return Error(ErrorCode::kInvalidArgument,
                 path.string() + ": a process is already listening on this socket");
  }
  if (errno != ECONNREFUSED && errno != ENOENT) {
    return socket_error(path, "probing the existing socket", errno);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return socket_error(path, "removing the stale socket", errno);
  }
  spdlog::info("api socket {}: removed a stale socket file", path.string());
  return ok();
}

// A listening socket bound at `path`, whose file has mode 0600 from the moment it exists.
Result<UniqueFd> listen_at(const std::filesystem::path& path, const sockaddr_un& addr) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    return socket_error(path, "socket", errno);
  }
  // bind() creates the file with mode 0777 & ~umask. The umask is per process: create()
  // runs during setup, before petrel starts threads that create files.
  mode_t saved_umask = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::umask(saved_umask);
  if (rc != 0) {
    return socket_error(path, "bind", err);
  }
  if (::listen(fd.get(), kListenBacklog) != 0) {
    err = errno;
    ::unlink(path.c_str());
    return socket_error(path, "listen", err);
  }
  return fd;
}

}  // namespace

ApiServer::ApiServer(boost::asio::io_context& io, std::filesystem::path path,
                     std::shared_ptr<const Router> router, ApiLimits limits)
    : acceptor_(io), path_(std::move(path)), router_(std::move(router)), limits_(limits) {}

Result<std::unique_ptr<ApiServer>> ApiServer::create(boost::asio::io_context& io,
                                                     const std::filesystem::path& path,
                                                     std::shared_ptr<const Router> router,
                                                     ApiLimits limits) {
  if (!router) {
    return Error(ErrorCode::kInvalidArgument, "api socket: no router");
  }
  PETREL_TRY_ASSIGN(sockaddr_un addr, socket_address(path));
  auto server = std::make_unique<ApiServer>(io, path, std::move(router), limits);
  PETREL_TRY(remove_stale_socket(path, addr));
  PETREL_TRY_ASSIGN(UniqueFd listener, listen_at(path, addr));
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
        std::erase_if(sessions_, [](const auto& weak) { return weak.expired(); });
        auto session = std::make_shared<ApiSession>(std::move(peer), router_, limits_);
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

}  // namespace petrel

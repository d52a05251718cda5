#include "vmm/migration_address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "vmm/base/unix_listener.h"

namespace petrel {

namespace {

using Clock = std::chrono::steady_clock;

Error invalid(std::string_view text, std::string_view why) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("migration address '{}': {}", text, why));
}

void set_buffers(int fd) {
  int size = kMigrationSocketBuffer;
  // Best effort: a smaller buffer only costs throughput.
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

Result<void> set_blocking(int fd, bool blocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 ||
      ::fcntl(fd, F_SETFL, blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK)) < 0) {
    return Error::from_errno("fcntl", errno);
  }
  return ok();
}

// Waits for `events` on `fd` until `deadline`, in slices so that `cancel` is noticed.
Result<void> wait_fd(int fd, short events, Clock::time_point deadline,
                     const std::atomic<bool>* cancel, std::string_view what) {
  for (;;) {
    if (cancel != nullptr && cancel->load()) {
      return migration_cancelled_error(what);
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return migration_timeout_error(what);
    }
    pollfd pfd{fd, events, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min(left, kCancelPollInterval).count()));
    if (rc < 0 && errno != EINTR) {
      return Error::from_errno(what, errno);
    }
    if (rc > 0) {
      return ok();
    }
  }
}

Result<UniqueFd> connect_one(int family, const sockaddr* sa, socklen_t len,
                             Clock::time_point deadline, const std::atomic<bool>* cancel,
                             const std::string& what) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    return Error::from_errno(what + ": socket", errno);
  }
  set_buffers(fd.get());
  if (::connect(fd.get(), sa, len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      return Error::from_errno(what, errno);
    }
    PETREL_TRY(wait_fd(fd.get(), POLLOUT, deadline, cancel, what));
    int err = 0;
    socklen_t err_len = sizeof(err);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) {
      err = errno;
    }
    if (err != 0) {
      return Error::from_errno(what, err);
    }
  }
  PETREL_TRY(set_blocking(fd.get(), true));
  return fd;
}

}  // namespace

Error migration_timeout_error(std::string_view what) {
  return Error(ErrorCode::kIo, fmt::format("{}: timed out", what), ETIMEDOUT);
}

Error migration_cancelled_error(std::string_view what) {
  return Error(ErrorCode::kIo, fmt::format("{}: cancelled", what), ECANCELED);
}

bool is_migration_timeout(const Error& error) {
  return error.code() == ErrorCode::kIo && error.sys_errno() == ETIMEDOUT;
}

bool is_migration_cancelled(const Error& error) {
  return error.code() == ErrorCode::kIo && error.sys_errno() == ECANCELED;
}

std::string MigrationAddress::to_string() const {
  if (kind == Kind::kUnix) {
    return "unix:" + path;
  }
  if (host.find(':') != std::string::npos) {
    return fmt::format("tcp:[{}]:{}", host, port);
  }
  return fmt::format("tcp:{}:{}", host, port);
}

Result<MigrationAddress> parse_migration_address(std::string_view text) {
  MigrationAddress addr;
  if (text.starts_with("unix:")) {
    addr.path = std::string(text.substr(5));
    if (addr.path.empty()) {
      return invalid(text, "empty socket path");
    }
    return addr;
  }
  if (!text.starts_with("tcp:")) {
    return invalid(text, "expected unix:PATH or tcp:HOST:PORT");
  }
  addr.kind = MigrationAddress::Kind::kTcp;
  std::string_view rest = text.substr(4);
  std::string_view port;
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return invalid(text, "expected [IPV6]:PORT");
    }
    addr.host = std::string(rest.substr(1, close - 1));
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return invalid(text, "missing :PORT");
    }
    addr.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
    if (addr.host.find(':') != std::string::npos) {
      return invalid(text, "an IPv6 literal must be in brackets: tcp:[ADDR]:PORT");
    }
  }
  if (addr.host.empty()) {
    return invalid(text, "empty host");
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return invalid(text, "the port must be a number 0-65535");
  }
  addr.port = static_cast<uint16_t>(value);
  return addr;
}

Result<UniqueFd> connect(const MigrationAddress& addr, std::chrono::milliseconds timeout,
                         const std::atomic<bool>* cancel) {
  const std::string what = "connecting to " + addr.to_string();
  Clock::time_point deadline = Clock::now() + timeout;
  if (addr.kind == MigrationAddress::Kind::kUnix) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (addr.path.size() >= sizeof(sun.sun_path)) {
      return Error(ErrorCode::kInvalidArgument, what + ": the path is too long");
    }
    std::memcpy(sun.sun_path, addr.path.data(), addr.path.size());
    return connect_one(AF_UNIX, reinterpret_cast<const sockaddr*>(&sun), sizeof(sun), deadline,
                       cancel, what);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(addr.port);
  int rc = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return Error(ErrorCode::kNotFound, fmt::format("{}: {}", what, ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(found, &::freeaddrinfo);
  Error last(ErrorCode::kNotFound, what + ": no address");
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    auto fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline, cancel, what);
    if (fd.ok()) {
      return std::move(fd).value();
    }
    last = std::move(fd).error();
    if (is_migration_timeout(last) || is_migration_cancelled(last)) {
      break;
    }
  }
  return last;
}

Result<MigrationListener> MigrationListener::listen(const MigrationAddress& addr) {
  constexpr int kBacklog = 4;
  if (addr.kind == MigrationAddress::Kind::kUnix) {
    PETREL_TRY_ASSIGN(UniqueFd fd, listen_unix_socket(addr.path, "migration socket", kBacklog));
    return MigrationListener(addr, std::move(fd));
  }
  const std::string what = "listening on " + addr.to_string();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  std::string port = std::to_string(addr.port);
  int rc = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return Error(ErrorCode::kNotFound, fmt::format("{}: {}", what, ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(found, &::freeaddrinfo);
  UniqueFd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    return Error::from_errno(what + ": socket", errno);
  }
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  set_buffers(fd.get());  // accepted sockets inherit the buffer sizes
  if (::bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return Error::from_errno(what + ": bind", errno);
  }
  if (::listen(fd.get(), kBacklog) != 0) {
    return Error::from_errno(what + ": listen", errno);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    return Error::from_errno(what + ": getsockname", errno);
  }
  MigrationAddress actual = addr;
  actual.port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  return MigrationListener(std::move(actual), std::move(fd));
}

MigrationListener::MigrationListener(MigrationListener&& other) noexcept
    : addr_(std::move(other.addr_)), fd_(std::move(other.fd_)) {}

MigrationListener::~MigrationListener() {
  if (fd_.valid() && addr_.kind == MigrationAddress::Kind::kUnix) {
    ::unlink(addr_.path.c_str());
  }
}

Result<UniqueFd> MigrationListener::accept(std::chrono::milliseconds timeout,
                                           const std::atomic<bool>* cancel) {
  const std::string what = "accepting on " + addr_.to_string();
  Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    PETREL_TRY(wait_fd(fd_.get(), POLLIN, deadline, cancel, what));
    // Accepted sockets do not inherit O_NONBLOCK: this one is blocking.
    UniqueFd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.valid()) {
      return conn;
    }
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
      return Error::from_errno(what, errno);
    }
  }
}

}  // namespace petrel

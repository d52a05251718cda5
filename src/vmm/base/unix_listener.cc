#include "vmm/base/unix_listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace petrel {

namespace {

constexpr size_t kMaxPathLength = sizeof(sockaddr_un::sun_path) - 1;

Error socket_error(std::string_view label, const std::filesystem::path& path, std::string_view what,
                   int err) {
  return Error::from_errno(fmt::format("{} {}: {}", label, path.string(), what), err);
}

int connect_to(int fd, const sockaddr_un& addr) {
  return ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
}

Result<void> remove_stale_socket(std::string_view label, const std::filesystem::path& path,
                                 const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return ok();
    }
    return socket_error(label, path, "lstat", errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument, path.string() + ": exists and is not a socket");
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe.valid()) {
    return socket_error(label, path, "socket", errno);
  }
  // Non-blocking: a listener with a full backlog answers EAGAIN instead of making us wait.
  if (connect_to(probe.get(), addr) == 0 || errno == EAGAIN) {
    return Error(ErrorCode::kInvalidArgument,
                 path.string() + ": a process is already listening on this socket");
  }
  if (errno != ECONNREFUSED && errno != ENOENT) {
    return socket_error(label, path, "probing the existing socket", errno);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return socket_error(label, path, "removing the stale socket", errno);
  }
  spdlog::info("{} {}: removed a stale socket file", label, path.string());
  return ok();
}

}  // namespace

Result<UniqueFd> listen_unix_socket(const std::filesystem::path& path, std::string_view label,
                                    int backlog) {
  const std::string& text = path.native();
  if (text.empty() || text.size() > kMaxPathLength) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} {}: the path must be 1 to {} bytes", label, text, kMaxPathLength));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, text.data(), text.size());
  PETREL_TRY(remove_stale_socket(label, path, addr));

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    return socket_error(label, path, "socket", errno);
  }
  // bind() creates the file with mode 0777 & ~umask; the umask is per process.
  mode_t saved_umask = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::umask(saved_umask);
  if (rc != 0) {
    return socket_error(label, path, "bind", err);
  }
  if (::listen(fd.get(), backlog) != 0) {
    err = errno;
    ::unlink(path.c_str());
    return socket_error(label, path, "listen", err);
  }
  return fd;
}

}  // namespace petrel

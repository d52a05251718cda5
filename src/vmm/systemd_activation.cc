#include "vmm/systemd_activation.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace petrel {

Result<std::optional<UniqueFd>> take_activated_socket() {
  const int n = sd_listen_fds(1);
  if (n < 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("socket activation: {}", std::strerror(-n)));
  }
  if (n == 0) {
    return std::optional<UniqueFd>{};
  }
  if (n > 1) {
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; ++fd) {
      ::close(fd);  // petrel serves none of them
    }
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("socket activation: systemd passed {} sockets; petrel takes one, "
                             "the API socket (one ListenStream= in the .socket unit)",
                             n));
  }
  UniqueFd fd(SD_LISTEN_FDS_START);
  if (sd_is_socket_unix(fd.get(), SOCK_STREAM, 1, nullptr, 0) <= 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "socket activation: fd 3 is not a listening Unix stream socket "
                 "(ListenStream=/path in the .socket unit)");
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0 ||
      ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
    return Error(ErrorCode::kIo, "socket activation: fcntl on fd 3", errno);
  }
  return std::optional<UniqueFd>(std::move(fd));
}

}  // namespace petrel

#include "vmm/migration_channel.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>

#include <fmt/format.h>

#include "vmm/base/state_codec.h"
#include "vmm/migration_address.h"

namespace petrel {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr std::chrono::milliseconds kFarewellTimeout{1000};

constexpr std::array<const char*, kMaxFrameType + 1> kNames{
    "?",      "HELLO",     "HELLO_ACK", "ERROR", "CONFIG", "READY",
    "MEMORY", "ROUND_END", "STATE",     "DONE",  "ACK",    "CANCEL"};

Error closed_error() {
  return Error(ErrorCode::kIo, "migration stream: connection closed by peer", ECONNRESET);
}

}  // namespace

std::string frame_type_name(uint32_t type) {
  if (type == 0 || type > kMaxFrameType) {
    return fmt::format("type {}", type);
  }
  return kNames[type];
}

uint64_t max_frame_payload(FrameType type) {
  switch (type) {
    case FrameType::kHello:
    case FrameType::kHelloAck:
      return 4 * kKiB;
    case FrameType::kError:
    case FrameType::kCancel:
      return 64 * kKiB;
    case FrameType::kConfig:
      return 16 * kMiB;
    case FrameType::kReady:
    case FrameType::kDone:
    case FrameType::kAck:
      return 0;
    case FrameType::kMemory:
      return 64 * kMiB;
    case FrameType::kRoundEnd:
      return 4;
    case FrameType::kState:
      return 1024 * kMiB;
  }
  return 0;
}

Result<MigrationChannel> MigrationChannel::create(UniqueFd fd) {
  PETREL_TRY_ASSIGN(EventFd wake, EventFd::create(EFD_NONBLOCK));
  return MigrationChannel(std::move(fd), std::move(wake));
}

MigrationChannel::MigrationChannel(UniqueFd fd, EventFd wake)
    : fd_(std::move(fd)), wake_(std::move(wake)), flags_(std::make_unique<Shared>()) {}

bool MigrationChannel::has_input() const {
  pollfd pfd{fd_.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0 && pfd.revents != 0;
}

void MigrationChannel::cancel() {
  flags_->cancelled.store(true);
  (void)wake_.signal();
}

Result<void> MigrationChannel::wait(short events, Deadline deadline, bool honour_cancel) {
  for (;;) {
    if (honour_cancel && cancelled()) {
      return migration_cancelled_error("migration stream");
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return migration_timeout_error("migration stream");
    }
    std::array<pollfd, 2> pfds{pollfd{fd_.get(), events, 0}, pollfd{wake_.fd(), POLLIN, 0}};
    int n = honour_cancel ? 2 : 1;
    int rc = ::poll(pfds.data(), n, static_cast<int>(std::min<int64_t>(left.count(), INT_MAX)));
    if (rc < 0 && errno != EINTR) {
      return Error::from_errno("migration stream: poll", errno);
    }
    if (rc > 0 && pfds[0].revents != 0) {
      return ok();  // readiness or an error/hangup that the next call reports
    }
  }
}

Result<void> MigrationChannel::write_all(std::vector<iovec> iov, Deadline deadline,
                                         bool honour_cancel) {
  size_t first = 0;
  bool started = false;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = &iov[first];
    msg.msg_iovlen = std::min<size_t>(iov.size() - first, IOV_MAX);
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) {
        continue;
      }
      Result<void> waited = ok();
      if (err == EAGAIN) {
        waited = wait(POLLOUT, deadline, honour_cancel);
      }
      if (err != EAGAIN || !waited.ok()) {
        send_broken_ = send_broken_ || started;
        if (err != EAGAIN) {
          return err == EPIPE || err == ECONNRESET ? closed_error()
                                                   : Error::from_errno("migration stream", err);
        }
        return waited;
      }
      continue;
    }
    started = true;
    flags_->sent.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    auto left = static_cast<size_t>(n);
    while (left > 0 && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      ++first;
    }
    if (left > 0) {
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return ok();
}

Result<void> MigrationChannel::send_pages(FrameType type, std::span<const iovec> parts,
                                          std::chrono::milliseconds timeout) {
  Deadline deadline = Clock::now() + timeout;
  if (send_broken_) {
    return Error(ErrorCode::kState, "migration stream: broken by an earlier failure");
  }
  uint64_t length = 0;
  for (const iovec& part : parts) {
    length += part.iov_len;
  }
  if (length > max_frame_payload(type)) {
    return Error(ErrorCode::kInternal,
                 fmt::format("migration stream: {} payload of {} bytes is over its limit",
                             frame_type_name(static_cast<uint32_t>(type)), length));
  }
  std::vector<std::byte> header;
  put_le(header, static_cast<uint32_t>(type), 4);
  put_le(header, 0, 4);
  put_le(header, length, 8);
  std::vector<iovec> iov;
  iov.reserve(parts.size() + 1);
  iov.push_back(iovec{header.data(), header.size()});
  iov.insert(iov.end(), parts.begin(), parts.end());
  return write_all(std::move(iov), deadline, true);
}

Result<void> MigrationChannel::send_frame(FrameType type, std::span<const std::byte> payload,
                                          std::chrono::milliseconds timeout) {
  iovec part{const_cast<std::byte*>(payload.data()), payload.size()};
  return send_pages(type, std::span(&part, payload.empty() ? 0 : 1), timeout);
}

void MigrationChannel::send_farewell(FrameType type, std::string_view text) {
  if (send_broken_ || !fd_.valid()) {
    return;
  }
  text = text.substr(0, max_frame_payload(type));
  std::vector<std::byte> header;
  put_le(header, static_cast<uint32_t>(type), 4);
  put_le(header, 0, 4);
  put_le(header, text.size(), 8);
  std::vector<iovec> iov{iovec{header.data(), header.size()},
                         iovec{const_cast<char*>(text.data()), text.size()}};
  (void)write_all(std::move(iov), Clock::now() + kFarewellTimeout, false);
}

Result<void> MigrationChannel::read_exact(std::byte* out, size_t len, Deadline deadline) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::recv(fd_.get(), out + done, len - done, MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      flags_->received.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      continue;
    }
    if (n == 0) {
      return closed_error();
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN) {
      return errno == ECONNRESET ? closed_error() : Error::from_errno("migration stream", errno);
    }
    PETREL_TRY(wait(POLLIN, deadline, true));
  }
  return ok();
}

Result<FrameType> MigrationChannel::recv_frame(std::vector<std::byte>& payload,
                                               std::chrono::milliseconds timeout) {
  Deadline deadline = Clock::now() + timeout;
  if (recv_broken_) {
    return Error(ErrorCode::kState, "migration stream: broken by an earlier failure");
  }
  std::array<std::byte, kFrameHeaderBytes> header{};
  auto result = [&]() -> Result<FrameType> {
    PETREL_TRY(read_exact(header.data(), header.size(), deadline));
    auto type = static_cast<uint32_t>(get_le(header.data(), 4));
    auto flags = static_cast<uint32_t>(get_le(header.data() + 4, 4));
    uint64_t length = get_le(header.data() + 8, 8);
    if (type == 0 || type > kMaxFrameType) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("migration stream: unknown frame type {}", type));
    }
    auto ftype = static_cast<FrameType>(type);
    if (flags != 0) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("migration stream: {} frame with flags {:#x} (must be 0)",
                               frame_type_name(type), flags));
    }
    if (length > max_frame_payload(ftype)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("migration stream: {} frame of {} bytes is over its limit of {}",
                               frame_type_name(type), length, max_frame_payload(ftype)));
    }
    payload.resize(length);
    PETREL_TRY(read_exact(payload.data(), payload.size(), deadline));
    return ftype;
  }();
  if (!result.ok()) {
    recv_broken_ = true;  // a refused header or a partial read: the next bytes are not a frame
  }
  return result;
}

}  // namespace petrel

#include "vmm/serial_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>

#include "vmm/base/unix_listener.h"
#include "vmm/vm_config.h"

namespace petrel {
namespace {

using boost::asio::local::stream_protocol;

static_assert(sizeof(sockaddr_un::sun_path) == kMaxSocketPathLength + 1);

constexpr int kListenBacklog = 4;
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

Error socket_error(const std::filesystem::path& path, std::string_view what, int err) {
  return Error::from_errno(fmt::format("console socket {}: {}", path.string(), what), err);
}

}  // namespace

SerialSocket::SerialSocket(boost::asio::io_context& io, std::filesystem::path path)
    : io_(io),
      path_(std::move(path)),
      acceptor_(io),
      accept_retry_(io),
      pipe_in_(io),
      client_(io) {}

Result<std::unique_ptr<SerialSocket>> SerialSocket::create(boost::asio::io_context& io,
                                                           const std::filesystem::path& path) {
  auto sock = std::make_unique<SerialSocket>(io, path);
  PETREL_TRY_ASSIGN(UniqueFd listener, listen_unix_socket(path, "console socket", kListenBacklog));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return socket_error(path, "lstat after bind", errno);
  }
  sock->bound_ = true;
  sock->socket_dev_ = st.st_dev;
  sock->socket_ino_ = st.st_ino;
  boost::system::error_code ec;
  sock->acceptor_.assign(stream_protocol(), listener.get(), ec);
  if (ec) {
    return Error(ErrorCode::kIo,
                 fmt::format("console socket {}: cannot poll: {}", path.string(), ec.message()));
  }
  listener.release();

  std::array<int, 2> fds{};
  // O_NONBLOCK on both ends: the UART's writes never wait (a full pipe drops bytes), and the
  // event loop's reads never block it.
  if (::pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK) != 0) {
    return socket_error(path, "pipe2", errno);
  }
  UniqueFd read_end(fds[0]);
  sock->pipe_out_ = UniqueFd(fds[1]);
  sock->pipe_in_.assign(read_end.get(), ec);
  if (ec) {
    return Error(ErrorCode::kIo, fmt::format("console socket {}: cannot poll the UART pipe: {}",
                                             path.string(), ec.message()));
  }
  read_end.release();
  spdlog::info("guest console on socket {}", path.string());
  return sock;
}

SerialSocket::~SerialSocket() {
  if (pumping_) {
    flush_output();
  }
  if (!bound_) {
    return;
  }
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
    ::unlink(path_.c_str());
  }
}

UniqueFd SerialSocket::uart_output() {
  return std::move(pipe_out_);
}

void SerialSocket::start(std::shared_ptr<Serial16550> serial) {
  serial_ = std::move(serial);
  accept_next();
}

void SerialSocket::accept_next() {
  acceptor_.async_accept([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec,
                                                                     stream_protocol::socket peer) {
    if (alive.expired() || ec == boost::asio::error::operation_aborted) {
      return;
    }
    if (ec) {
      // EMFILE and the like: the listener stays readable, so wait before trying again.
      spdlog::warn("console socket {}: accept failed: {}", path_.string(), ec.message());
      accept_retry_.expires_after(kAcceptRetryDelay);
      accept_retry_.async_wait([this, alive](boost::system::error_code wait_ec) {
        if (!wait_ec && !alive.expired()) {
          accept_next();
        }
      });
      return;
    }
    connect(std::move(peer));
    accept_next();
  });
}

void SerialSocket::connect(stream_protocol::socket peer) {
  boost::system::error_code ignored;
  if (connected_) {
    spdlog::warn("console socket {}: refused a client: another client is connected",
                 path_.string());
    peer.close(ignored);
    return;
  }
  uint64_t id = connection_ + 1;
  auto on_closed = [this, alive = std::weak_ptr<bool>(alive_), id] {
    if (!alive.expired() && connected_ && id == connection_) {
      disconnect("end of input");
    }
  };
  auto input = ConsoleInput::create(io_, peer.native_handle(), serial_, std::move(on_closed));
  if (!input) {
    spdlog::warn("console socket {}: dropped a client: {}", path_.string(),
                 input.error().to_string());
    peer.close(ignored);
    return;
  }
  connection_ = id;
  connected_ = true;
  client_ = std::move(peer);
  client_input_ = std::move(input).value();
  spdlog::info("console socket {}: client connected", path_.string());
  if (!pumping_) {
    pumping_ = true;
    pump_output();
  }
}

void SerialSocket::disconnect(std::string_view why) {
  spdlog::info("console socket {}: client disconnected ({})", path_.string(), why);
  client_input_.reset();
  boost::system::error_code ignored;
  client_.close(ignored);  // a write in progress completes with operation_aborted
  connected_ = false;
}

// Once pumping has started, exactly one wait is outstanding: for the pipe to become
// readable, or for the client's socket to become writable. Bytes are read and sent with
// non-blocking system calls in the handlers, so no data is ever held inside a queued
// completion: it is in the pipe or in out_buf_, where flush_output() finds it.
void SerialSocket::pump_output() {
  pipe_in_.async_wait(
      boost::asio::posix::stream_descriptor::wait_read,
      [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
        if (alive.expired() || ec == boost::asio::error::operation_aborted) {
          return;
        }
        ssize_t n = ec ? -1 : ::read(pipe_in_.native_handle(), out_buf_.data(), out_buf_.size());
        if (n < 0 && !ec && (errno == EAGAIN || errno == EINTR)) {
          pump_output();
          return;
        }
        if (n <= 0) {
          // Only the UART holds the write end, and it outlives this object: not expected.
          spdlog::warn("console socket {}: reading guest output failed: {}", path_.string(),
                       ec ? ec.message() : (n == 0 ? "end of file" : std::strerror(errno)));
          return;
        }
        if (!connected_) {
          pump_output();  // nobody to send it to: discarded
          return;
        }
        out_begin_ = 0;
        out_end_ = static_cast<size_t>(n);
        out_client_ = connection_;
        send_output();
      });
}

void SerialSocket::send_output() {
  if (send_pending() != SendResult::kWouldBlock) {
    pump_output();
    return;
  }
  client_.async_wait(stream_protocol::socket::wait_write,
                     [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                       if (alive.expired()) {
                         return;
                       }
                       // operation_aborted: disconnect() closed the client; send_output() then
                       // finds it gone.
                       if (ec && ec != boost::asio::error::operation_aborted && connected_ &&
                           out_client_ == connection_) {
                         disconnect(ec.message());
                       }
                       send_output();
                     });
}

SerialSocket::SendResult SerialSocket::send_pending() {
  while (out_begin_ < out_end_) {
    if (!connected_ || out_client_ != connection_) {
      out_begin_ = out_end_ = 0;
      return SendResult::kClientGone;
    }
    ssize_t n = ::send(client_.native_handle(), out_buf_.data() + out_begin_, out_end_ - out_begin_,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      out_begin_ += static_cast<size_t>(n);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return SendResult::kWouldBlock;
    } else if (errno != EINTR) {
      disconnect(std::strerror(errno));  // EPIPE, ECONNRESET: the client went away
    }
  }
  return SendResult::kSent;
}

void SerialSocket::flush_output() {
  while (connected_) {
    if (send_pending() == SendResult::kWouldBlock) {
      return;  // the client is not reading: the rest is dropped
    }
    ssize_t n = ::read(pipe_in_.native_handle(), out_buf_.data(), out_buf_.size());
    if (n <= 0) {
      return;  // the pipe is empty (EAGAIN)
    }
    out_begin_ = 0;
    out_end_ = static_cast<size_t>(n);
    out_client_ = connection_;
  }
}

}  // namespace petrel

#include "vmm/console_input.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>

namespace petrel {

ConsoleInput::ConsoleInput(boost::asio::io_context& io, std::shared_ptr<Serial16550> serial,
                           ClosedCallback on_closed)
    : stream_(io), retry_(io), serial_(std::move(serial)), on_closed_(std::move(on_closed)) {}

Result<std::unique_ptr<ConsoleInput>> ConsoleInput::create(boost::asio::io_context& io, int fd,
                                                           std::shared_ptr<Serial16550> serial,
                                                           ClosedCallback on_closed) {
  int dup_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) {
    return Error::from_errno("dup console input", errno);
  }
  auto input = std::make_unique<ConsoleInput>(io, std::move(serial), std::move(on_closed));
  boost::system::error_code ec;
  input->stream_.assign(dup_fd, ec);
  if (!ec) {
    input->stream_.non_blocking(true, ec);
  }
  if (ec) {
    ::close(dup_fd);
    return Error(ErrorCode::kUnsupported, "console input fd cannot be polled: " + ec.message());
  }
  termios tio{};
  if (::isatty(fd) && ::tcgetattr(fd, &tio) == 0) {
    input->saved_termios_ = tio;
    input->tty_fd_ = fd;
    termios raw = tio;
    raw.c_iflag &= ~static_cast<tcflag_t>(ICRNL | IXON | INLCR | IGNCR);
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ECHONL | IEXTEN);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    ::tcsetattr(fd, TCSANOW, &raw);
  }
  input->read_more();
  return input;
}

ConsoleInput::~ConsoleInput() {
  if (saved_termios_) {
    ::tcsetattr(tty_fd_, TCSANOW, &*saved_termios_);
  }
}

void ConsoleInput::read_more() {
  stream_.async_read_some(boost::asio::buffer(buf_), [this, alive = std::weak_ptr<bool>(alive_)](
                                                         boost::system::error_code ec, size_t n) {
    if (alive.expired()) {
      return;
    }
    if (ec) {
      if (ec != boost::asio::error::operation_aborted) {
        spdlog::debug("console input closed: {}", ec.message());
        if (on_closed_) {
          // Moved out first: the callback may destroy this ConsoleInput.
          ClosedCallback on_closed = std::move(on_closed_);
          on_closed();
        }
      }
      return;
    }
    pending_begin_ = 0;
    pending_end_ = n;
    deliver();
  });
}

void ConsoleInput::deliver() {
  auto pending = std::span(buf_).subspan(pending_begin_, pending_end_ - pending_begin_);
  pending_begin_ += serial_->push_input(pending);
  if (pending_begin_ == pending_end_) {
    read_more();
    return;
  }
  // The guest has not drained its receive FIFO yet: look again shortly.
  retry_.expires_after(std::chrono::milliseconds(10));
  retry_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (!ec && !alive.expired()) {
      deliver();
    }
  });
}

}  // namespace petrel

// ConsoleInput: feeds bytes from a host fd (stdin, or a connected socket) into the guest's
// UART on the VMM event loop. When the UART's receive FIFO is full it waits and retries,
// so nothing typed is lost. While stdin is a terminal it is put in raw mode (signals such
// as Ctrl-C still reach petrel) and restored when the ConsoleInput goes away.
//
// Thread affinity: used and destroyed on the VMM event-loop thread (the thread running
// `io`); it may be created on the owning thread before that loop starts running. It may be
// destroyed at any point on that thread, even with reads and timers pending: completion
// handlers already queued then find it gone and do nothing.
#pragma once

#include <termios.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "devices/serial_16550.h"
#include "vmm/base/result.h"

namespace petrel {

class ConsoleInput {
 public:
  // Called on the loop thread once `fd` reaches end of file or fails to read, never after
  // the ConsoleInput is destroyed. It is the last thing the ConsoleInput does, so the callback
  // may destroy it.
  using ClosedCallback = std::function<void()>;

  // `fd` is duplicated; an fd the event loop cannot poll (a regular file, /dev/null) gives an
  // error, and the caller runs without console input. `on_closed` may be empty.
  static Result<std::unique_ptr<ConsoleInput>> create(boost::asio::io_context& io, int fd,
                                                      std::shared_ptr<Serial16550> serial,
                                                      ClosedCallback on_closed = {});
  // Use create(); public only for std::make_unique.
  ConsoleInput(boost::asio::io_context& io, std::shared_ptr<Serial16550> serial,
               ClosedCallback on_closed);
  ~ConsoleInput();
  ConsoleInput(const ConsoleInput&) = delete;
  ConsoleInput& operator=(const ConsoleInput&) = delete;

 private:
  void read_more();
  void deliver();

  boost::asio::posix::stream_descriptor stream_;
  boost::asio::steady_timer retry_;
  std::shared_ptr<Serial16550> serial_;
  ClosedCallback on_closed_;
  // Handlers hold a weak_ptr to this: expired means the ConsoleInput is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::array<std::byte, 256> buf_{};
  size_t pending_begin_ = 0;
  size_t pending_end_ = 0;
  std::optional<termios> saved_termios_;
  int tty_fd_ = -1;
};

}  // namespace petrel

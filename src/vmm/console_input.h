// ConsoleInput: feeds bytes from a host fd (stdin, or a connected socket) into the guest's
// UART on the VMM event loop. When the UART's receive FIFO is full it waits and retries,
// so nothing typed is lost. While stdin is a terminal it is put in raw mode (signals such
// as Ctrl-C still reach petrel) and restored when the ConsoleInput goes away.
//
// Thread affinity: created, used and destroyed on the VMM event-loop thread's io_context.
#pragma once

#include <termios.h>

#include <array>
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
  // `fd` is duplicated; an fd the event loop cannot poll (a regular file, /dev/null) gives an
  // error, and the caller runs without console input.
  static Result<std::unique_ptr<ConsoleInput>> create(boost::asio::io_context& io, int fd,
                                                      std::shared_ptr<Serial16550> serial);
  // Use create(); public only for std::make_unique.
  ConsoleInput(boost::asio::io_context& io, std::shared_ptr<Serial16550> serial);
  ~ConsoleInput();
  ConsoleInput(const ConsoleInput&) = delete;
  ConsoleInput& operator=(const ConsoleInput&) = delete;

 private:
  void read_more();
  void deliver();

  boost::asio::posix::stream_descriptor stream_;
  boost::asio::steady_timer retry_;
  std::shared_ptr<Serial16550> serial_;
  std::array<std::byte, 256> buf_{};
  size_t pending_begin_ = 0;
  size_t pending_end_ = 0;
  std::optional<termios> saved_termios_;
  int tty_fd_ = -1;
};

}  // namespace petrel

// SerialSocket: the guest console (a Serial16550) on a Unix stream socket that petrel listens
// on, for `--serial socket:PATH`.
//
// - The socket is created at PATH with mode 0600. A socket file already at PATH is removed
//   first unless a process is listening on it; anything else at PATH is refused. PATH is
//   unlinked when the SerialSocket goes away (if the file there is still the one it bound).
// - One client at a time: its bytes go to the UART's receive FIFO through a ConsoleInput
//   (with back-pressure: petrel stops reading the client while the FIFO is full), and the
//   guest's output goes to it. A client that connects while another one is connected is
//   closed at once. End of file from the client (close or shutdown(SHUT_WR)) or a failed
//   write ends the connection, and the next client may connect.
// - The UART writes into a non-blocking pipe (uart_output()), so a vCPU never waits for a
//   client: when the pipe is full the UART drops the bytes. The event loop drains the pipe
//   and writes to the client; while one write to the client is in progress it stops draining,
//   so the buffering is bounded by one chunk plus the pipe's capacity (64 KiB on Linux).
//   Output written before the first client connects stays in the pipe and reaches that
//   client (up to the pipe's capacity); after that, output while no client is connected is
//   discarded. On destruction, output not yet sent goes to the client as far as its socket
//   buffer takes it without waiting, so what the guest wrote just before it stopped arrives.
//
// Thread affinity: create() and uart_output() run on the owning thread while the event loop
// is not running yet; start() on the owning thread before the loop runs, or on the loop
// thread; after start(), all use and the destruction happen on the loop thread (the thread
// running `io`). It may be destroyed at any point on that thread: completion handlers already
// queued then find it gone and do nothing. Destroyed without start(), it may go on any thread.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "devices/serial_16550.h"
#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"
#include "vmm/console_input.h"

namespace petrel {

class SerialSocket {
 public:
  // Listens at `path` (see above) and creates the UART pipe. Errors: kInvalidArgument when
  // something other than a socket is at `path` or a process listens on it, kIo when a system
  // call fails.
  static Result<std::unique_ptr<SerialSocket>> create(boost::asio::io_context& io,
                                                      const std::filesystem::path& path);
  ~SerialSocket();
  SerialSocket(const SerialSocket&) = delete;
  SerialSocket& operator=(const SerialSocket&) = delete;

  // The write end of the UART pipe, for the Serial16550's output (O_NONBLOCK). The first call
  // returns it; later calls return an invalid fd.
  UniqueFd uart_output();

  // Starts accepting clients; their input goes to `serial`. Call once.
  void start(std::shared_ptr<Serial16550> serial);

  // Use create(); public only for std::make_unique.
  SerialSocket(boost::asio::io_context& io, std::filesystem::path path);

 private:
  void accept_next();
  void connect(boost::asio::local::stream_protocol::socket peer);
  void disconnect(std::string_view why);
  // Waits for guest output in the pipe, then reads a chunk and sends it (send_output).
  void pump_output();
  // Sends the pending chunk; waits for the client to take more when its socket is full; then
  // goes back to pump_output.
  void send_output();
  enum class SendResult { kSent, kWouldBlock, kClientGone };
  // Sends as much of the pending chunk as the client's socket takes now; never blocks.
  SendResult send_pending();
  // On destruction: sends the pending chunk and what is left in the pipe, without waiting.
  void flush_output();

  boost::asio::io_context& io_;
  const std::filesystem::path path_;
  bool bound_ = false;    // a socket file at path_ is petrel's: unlink it at the end
  dev_t socket_dev_ = 0;  // that file's identity, so that a replacement is left alone
  ino_t socket_ino_ = 0;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;         // after a failed accept (e.g. EMFILE)
  boost::asio::posix::stream_descriptor pipe_in_;  // the read end of the UART pipe
  UniqueFd pipe_out_;                              // the write end, until uart_output()
  std::shared_ptr<Serial16550> serial_;
  boost::asio::local::stream_protocol::socket client_;
  std::unique_ptr<ConsoleInput> client_input_;
  bool connected_ = false;
  bool pumping_ = false;     // pump_output() has started (with the first client)
  uint64_t connection_ = 0;  // counts accepted clients: which client a completion is for
  // Guest output read from the pipe and not yet sent: out_buf_[out_begin_, out_end_), meant
  // for client number out_client_ (dropped if that client is gone).
  std::array<std::byte, 4096> out_buf_{};
  size_t out_begin_ = 0;
  size_t out_end_ = 0;
  uint64_t out_client_ = 0;
  // Handlers hold a weak_ptr to this: expired means the SerialSocket is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace petrel

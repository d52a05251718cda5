// ApiSession: one client connection of the ApiServer; HTTP/1.1 with keep-alive.
//
// - Reads one request at a time (no pipelining beyond what the read buffer holds), hands it
//   to the Router and writes the answer, then reads the next one while both sides keep the
//   connection alive.
// - Limits (ApiLimits): a body over max_body_bytes answers 413 "payload_too_large"; reading a
//   request or writing an answer that takes longer than io_timeout closes the connection
//   (slow and half-open clients are dropped); a request that does not parse answers 400
//   "bad_request". After 413 or 400 the connection is closed.
// - Every response is application/json.
//
// Ownership and thread affinity: always held by std::shared_ptr; pending operations keep it
// alive, so it goes away after the connection ends. All members run on the thread running
// the io_context of its socket (the server's loop thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "api/api_message.h"
#include "api/router.h"

namespace petrel {

struct ApiLimits {
  std::size_t max_body_bytes = 64 * 1024;
  std::chrono::milliseconds io_timeout = std::chrono::seconds(10);
  std::size_t max_sessions = 64;
};

class ApiSession : public std::enable_shared_from_this<ApiSession> {
 public:
  ApiSession(boost::asio::local::stream_protocol::socket socket,
             std::shared_ptr<const Router> router, const ApiLimits& limits);
  ApiSession(const ApiSession&) = delete;
  ApiSession& operator=(const ApiSession&) = delete;

  // Serves requests until the client or a limit ends the connection.
  void start();
  // Writes `response` and closes, without reading anything (e.g. 503 over the session cap).
  void reject(ApiResponse response);
  // Ends the connection now; pending operations complete with operation_aborted.
  void close();

 private:
  using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

  void read_next();
  void on_read(boost::system::error_code ec);
  void write(ApiResponse response, bool keep_alive);
  // Closes the connection unless disarm() runs within io_timeout.
  void arm_deadline();
  void disarm();

  boost::asio::local::stream_protocol::socket socket_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<const Router> router_;
  ApiLimits limits_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  HttpResponse response_;
  uint64_t deadline_ = 0;  // generation of the armed deadline; a stale timer does nothing
  bool armed_ = false;
};

}  // namespace petrel

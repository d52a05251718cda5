// ApiSession: one client connection of the ApiServer; HTTP/1.1 with keep-alive.
//
// - Reads one request at a time (no pipelining beyond what the read buffer holds), hands it
//   to the Router and writes the answer, then reads the next one while both sides keep the
//   connection alive.
// - Limits (ApiLimits): a body over max_body_bytes answers 413 "body_too_large"; reading a
//   request or writing an answer that takes longer than io_timeout closes the connection
//   (slow and half-open clients are dropped); a request that does not parse answers 400
//   "bad_request". After 413 or 400 the connection is closed.
// - A streaming response (ApiResponse::stream) is written with Transfer-Encoding: chunked, one
//   chunk per push(), through a queue of at most max_stream_queue chunks; on overflow the
//   producer's overflow_chunk() and the terminating chunk end it. The stream also ends when
//   the client closes or half-closes its side (EOF), when a write makes no progress for
//   io_timeout, or when close() runs (then the terminating chunk is sent if the socket takes
//   it at once). An idle stream has no timeout.
// - Every response and connection is counted in the shared ApiCounters.
//
// Ownership and thread affinity: always held by std::shared_ptr; pending operations keep it
// alive, so it goes away after the connection ends. All members run on the thread running
// the io_context of its socket (the server's loop thread); only the stream queue is fed from
// other threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "api/api_counters.h"
#include "api/api_message.h"
#include "api/router.h"

namespace petrel {

struct ApiLimits {
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_header_bytes = 8 * 1024;  // request line + header fields
  std::chrono::milliseconds io_timeout = std::chrono::seconds(10);
  std::size_t max_sessions = 64;
  std::size_t max_stream_queue = 4096;  // chunks waiting per stream
};

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpRequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// The request parser as every session configures it (body and header limits). Shared with
// the API fuzz target so that it parses exactly what the server parses.
void configure_request_parser(HttpRequestParser& parser, const ApiLimits& limits);
// The Router's view of a parsed request (target split at the first '?').
ApiRequest to_api_request(const HttpRequest& message);

class ApiSession : public std::enable_shared_from_this<ApiSession> {
 public:
  // `counters` must not be null.
  ApiSession(boost::asio::local::stream_protocol::socket socket,
             std::shared_ptr<const Router> router, const ApiLimits& limits,
             std::shared_ptr<ApiCounters> counters);
  ~ApiSession();
  ApiSession(const ApiSession&) = delete;
  ApiSession& operator=(const ApiSession&) = delete;

  // Serves requests until the client or a limit ends the connection.
  void start();
  // Writes `response` and closes, without reading anything (e.g. 503 over the session cap).
  void reject(ApiResponse response);
  // Ends the connection now (a stream gets its terminating chunk if the socket takes it at
  // once); pending operations complete with operation_aborted. Idempotent.
  void close();

 private:
  class StreamQueue;
  using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

  void read_next();
  void on_read(boost::system::error_code ec);
  void write(ApiResponse response, bool keep_alive);
  // Closes the connection unless disarm() runs within io_timeout.
  void arm_deadline();
  void disarm();

  void start_stream(ApiResponse response);
  // Moves queued chunks to the socket until it would block; runs on the session's thread.
  void drain_stream();
  void watch_client();

  boost::asio::local::stream_protocol::socket socket_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<const Router> router_;
  ApiLimits limits_;
  std::shared_ptr<ApiCounters> counters_;
  boost::beast::flat_buffer buffer_;
  std::optional<HttpRequestParser> parser_;
  HttpResponse response_;
  uint64_t deadline_ = 0;  // generation of the armed deadline; a stale timer does nothing
  bool armed_ = false;
  bool closed_ = false;

  // Streaming state (set by start_stream).
  std::shared_ptr<ApiStream> stream_;
  std::shared_ptr<StreamQueue> queue_;
  std::string out_;             // bytes for the socket: head and chunks
  std::size_t sent_ = 0;        // bytes of out_ already written
  bool write_waiting_ = false;  // an async_wait(write) is pending
  bool finishing_ = false;      // out_ ends with the terminating chunk; close once written
};

}  // namespace petrel

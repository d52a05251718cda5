// ApiRequest / ApiResponse: one HTTP exchange of the control API, without the transport.
// Plain values: the session (api_session.h) fills an ApiRequest from the wire, a handler
// answers with an ApiResponse, and the session writes it back.
//
// A response is either a whole body (`body`, framed with Content-Length) or a stream
// (`stream` set: Transfer-Encoding: chunked, `body` ignored, the connection closes when the
// stream ends).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace petrel {

struct ApiRequest {
  std::string method;  // as on the wire: "GET", "PUT", ...
  std::string path;    // the target up to '?', e.g. "/v1/vm"
  std::string query;   // after '?', without it; empty if none
  std::string body;    // client-controlled bytes, at most ApiLimits::max_body_bytes
};

// Where a streaming response's producer puts its chunks; implemented by the session.
// Thread-safe: push() may be called from any thread, also after the stream has ended.
class ApiStreamSink {
 public:
  virtual ~ApiStreamSink() = default;
  // Queues `chunk` (written as one HTTP chunk; empty chunks are dropped). Returns false and
  // drops it when the stream has ended or its bounded queue is full; a full queue ends the
  // stream with the producer's overflow_chunk().
  virtual bool push(std::string chunk) = 0;
};

// The producer of a streaming response. The session owns it from dispatch until the stream
// ends; start(), overflow_chunk() and the destructor run on the session's thread. Destroying it
// must stop further push() calls from reaching anything the producer owns (e.g. unsubscribe).
class ApiStream {
 public:
  virtual ~ApiStream() = default;
  // Called once, after the response head is queued. May push synchronously and keep `sink`
  // to push later from any thread.
  virtual void start(std::shared_ptr<ApiStreamSink> sink) = 0;
  // The last chunk written when the queue overflowed (the stream then ends).
  virtual std::string overflow_chunk() const = 0;
};

struct ApiResponse {
  unsigned status = 200;
  std::string body;                                          // empty means no body
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (e.g. Allow)
  std::string content_type = "application/json";
  std::shared_ptr<ApiStream> stream;  // set for a streaming response
};

}  // namespace petrel

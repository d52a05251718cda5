// HttpClient: petrelctl's HTTP/1.1 client for the control API on a Unix stream socket
// (Boost.Beast; synchronous for the caller, each call a fresh connection).
//
// Errors: kIo whenever the server cannot be reached or stops answering: no socket, nobody
// listening, connect/write/read timeout, the connection closed before a full response
// (sys_errno() says which when there is one); kInvalidArgument for a socket path too long
// for sockaddr_un; kInternal for a response that is not valid HTTP (or too large).
//
// Thread affinity: one thread at a time per client. Never throws.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "vmm/base/result.h"

namespace petrel::ctl {

struct HttpResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

class HttpClient {
 public:
  // `timeout` bounds connect + request + response of request(), and connect + response
  // header of stream().
  HttpClient(std::string socket_path, std::chrono::milliseconds timeout);

  // One request; `body` (JSON) is sent with Content-Type application/json when non-empty.
  Result<HttpResponse> request(std::string_view method, std::string_view target,
                               std::string_view body = {});

  // GET `target` and hand the body to `on_data` piece by piece as it arrives (chunked
  // streams: no timeout once the header is in). Stops when the body ends (the server closed
  // the stream) or `on_data` returns false. A status other than 200 is not an error: the
  // whole response is returned (body included) and on_data is not called; for 200 the body
  // of the returned response is empty.
  Result<HttpResponse> stream(std::string_view target,
                              const std::function<bool(std::string_view)>& on_data);

  const std::string& socket_path() const { return socket_path_; }

  // The largest response body request() accepts.
  static constexpr size_t kMaxBody = 16 * 1024 * 1024;

 private:
  std::string socket_path_;
  std::chrono::milliseconds timeout_;
};

}  // namespace petrel::ctl

// ApiRequest / ApiResponse: one HTTP exchange of the control API, without the transport.
// Plain values: the session (api_session.h) fills an ApiRequest from the wire, a handler
// answers with an ApiResponse, and the session writes it back as application/json.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace petrel {

struct ApiRequest {
  std::string method;  // as on the wire: "GET", "PUT", ...
  std::string path;    // the target up to '?', e.g. "/v1/vm"
  std::string query;   // after '?', without it; empty if none
  std::string body;
};

struct ApiResponse {
  unsigned status = 200;
  std::string body;                                          // JSON text; empty means no body
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (e.g. Allow)
};

}  // namespace petrel

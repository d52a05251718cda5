// Router: the API's routing table, exact (method, path) -> handler.
//
// - An unknown path answers 404 "not_found"; a known path with a method it has no handler
//   for answers 405 "method_not_allowed" with an Allow header listing the methods it has.
// - A handler that throws answers 500 "internal"; dispatch() itself never throws.
//
// Thread affinity: add() before the router is shared with a server (not concurrently with
// dispatch()); dispatch() is const and may run on any thread, the handlers run on the thread
// that calls it (the ApiServer's event loop thread).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "api/api_message.h"
#include "vmm/base/result.h"

namespace petrel {

using ApiHandler = std::function<ApiResponse(const ApiRequest&)>;

class Router {
 public:
  // Registers `handler` for `method` (e.g. "GET") on `path` (e.g. "/v1/vm"). Errors:
  // kInvalidArgument for an empty method, a path not starting with '/', an empty handler,
  // or a (method, path) pair already registered.
  Result<void> add(std::string method, std::string path, ApiHandler handler);

  ApiResponse dispatch(const ApiRequest& request) const noexcept;

 private:
  // path -> method -> handler (ordered, so Allow lists methods in a stable order).
  std::map<std::string, std::map<std::string, ApiHandler>> routes_;
};

}  // namespace petrel

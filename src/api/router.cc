#include "api/router.h"

#include <exception>
#include <utility>

#include <fmt/format.h>

#include "api/api_error.h"

namespace petrel {

Result<void> Router::add(std::string method, std::string path, ApiHandler handler) {
  if (method.empty() || path.empty() || path.front() != '/' || !handler) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("route {} {}: needs a method, a path starting with '/' and a handler",
                             method, path));
  }
  auto& methods = routes_[path];
  if (methods.contains(method)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("route {} {}: registered twice", method, path));
  }
  methods.emplace(std::move(method), std::move(handler));
  return ok();
}

ApiResponse Router::dispatch(const ApiRequest& request) const noexcept {
  try {
    auto path_it = routes_.find(request.path);
    if (path_it == routes_.end()) {
      return error_response(404, "not_found", fmt::format("no such path: {}", request.path));
    }
    auto method_it = path_it->second.find(request.method);
    if (method_it == path_it->second.end()) {
      std::string allow;
      for (const auto& [method, handler] : path_it->second) {
        allow += allow.empty() ? method : ", " + method;
      }
      ApiResponse res = error_response(
          405, "method_not_allowed",
          fmt::format("{} does not allow {} (allowed: {})", request.path, request.method, allow));
      res.headers.emplace_back("Allow", std::move(allow));
      return res;
    }
    return method_it->second(request);
  } catch (const std::exception& e) {
    return error_response(500, "internal", fmt::format("request handler failed: {}", e.what()));
  } catch (...) {
    return error_response(500, "internal", "request handler failed");
  }
}

}  // namespace petrel

#include "api/api_error.h"

#include <nlohmann/json.hpp>

namespace petrel {

unsigned http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kState:
      return 409;
    default:
      return 500;
  }
}

std::string_view api_error_code(ErrorCode code) {
  return to_string(code);  // the stable snake_case names of vmm/base/error.h
}

std::string error_body(std::string_view code, std::string_view message,
                       const std::vector<std::string>& chain) {
  nlohmann::json j;
  j["error"]["code"] = std::string(code);
  j["error"]["message"] = std::string(message);
  j["error"]["chain"] = chain;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ApiResponse error_response(const Error& error) {
  ApiResponse res;
  res.status = http_status(error.code());
  res.body = error_body(api_error_code(error.code()), error.to_string(), error.chain());
  return res;
}

ApiResponse error_response(unsigned status, std::string_view code, std::string message) {
  ApiResponse res;
  res.status = status;
  res.body = error_body(code, message, {message});
  return res;
}

}  // namespace petrel

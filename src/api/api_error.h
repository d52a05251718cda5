// How petrel errors appear on the API: an HTTP status and a stable snake_case code, in the
// body {"error":{"code":"...","message":"...","chain":[...]}} (chain: outermost context
// first, the original message last). Codes are part of the API: never rename one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/api_message.h"
#include "vmm/base/error.h"

namespace petrel {

// kInvalidArgument 400, kNotFound 404, kState 409, everything else 500.
unsigned http_status(ErrorCode code);

// "invalid_argument", "not_found", "state", ... (one per ErrorCode).
std::string_view api_error_code(ErrorCode code);

// The error response for `error` (status from http_status, code from api_error_code).
ApiResponse error_response(const Error& error);

// An error response for failures that are not a petrel::Error (routing, HTTP limits):
// e.g. (405, "method_not_allowed", "..."). The chain holds just `message`.
ApiResponse error_response(unsigned status, std::string_view code, std::string message);

// Never throws: text that is not valid UTF-8 is replaced, not rejected.
std::string error_body(std::string_view code, std::string_view message,
                       const std::vector<std::string>& chain);

}  // namespace petrel

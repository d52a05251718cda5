#include "vmm/base/error.h"

#include <cstring>
#include <utility>

namespace petrel {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kOutOfRange:
      return "out_of_range";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kKvm:
      return "kvm";
    case ErrorCode::kGuest:
      return "guest";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kState:
      return "state";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

Error::Error(ErrorCode code, std::string message, int sys_errno)
    : code_(code), message_(std::move(message)), sys_errno_(sys_errno) {}

Error Error::from_errno(std::string_view what, int err) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo, std::move(msg), err);
}

Error& Error::context(std::string ctx) & {
  contexts_.push_back(std::move(ctx));
  return *this;
}

Error&& Error::context(std::string ctx) && {
  contexts_.push_back(std::move(ctx));
  return std::move(*this);
}

std::vector<std::string> Error::chain() const {
  std::vector<std::string> out(contexts_.rbegin(), contexts_.rend());
  out.push_back(message_);
  return out;
}

std::string Error::to_string() const {
  std::string out;
  for (const auto& part : chain()) {
    if (!out.empty()) {
      out += ": ";
    }
    out += part;
  }
  return out;
}

}  // namespace petrel

// Error: a code, a message and a context chain (innermost first). Below src/api/ every
// fallible function returns Result<T> (result.h) carrying one of these.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace petrel {

enum class ErrorCode {
  kInvalidArgument,  // bad input from the config, command line or API
  kNotFound,         // a file, device or resource that does not exist
  kOutOfRange,       // an address or size outside what is allowed
  kIo,               // a system call failed (see sys_errno())
  kKvm,              // a KVM ioctl failed or KVM lacks a capability
  kGuest,            // the guest did something that stops the VM
  kUnsupported,      // valid input that petrel does not handle
  kState,            // an action illegal in the current state
  kInternal,         // a petrel bug
};

std::string_view to_string(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message, int sys_errno = 0);

  // An error from a failed system call: the message is "<what>: <strerror(err)>".
  static Error from_errno(std::string_view what, int err);

  // Adds an outer context ("while loading the kernel") to the chain.
  Error& context(std::string ctx) &;
  Error&& context(std::string ctx) &&;

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return sys_errno_; }
  // Outermost context first, the original message last.
  std::vector<std::string> chain() const;
  // "outer: inner: message"
  std::string to_string() const;

 private:
  ErrorCode code_;
  std::string message_;
  int sys_errno_;
  std::vector<std::string> contexts_;  // innermost first
};

}  // namespace petrel

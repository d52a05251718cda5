// Helpers shared by CtlRunner's source files (ctl_runner.cc, ctl_runner_migration.cc):
// constants and small readers of the server's (untrusted) JSON answers. Internal to
// petrelctl.
#pragma once

#include <chrono>
#include <filesystem>
#include <ostream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/petrelctl/http_client.h"

namespace petrel::ctl::detail {

using json = nlohmann::json;

constexpr std::chrono::milliseconds kDefaultShutdownTimeout{30000};  // petrel's default
constexpr std::chrono::milliseconds kWaitGrace{30000};               // after the guest's timeout
constexpr std::chrono::milliseconds kPollInterval{200};
constexpr std::chrono::milliseconds kListTimeout{2000};                // per socket, at most
constexpr std::chrono::milliseconds kDefaultMigrationTimeout{600000};  // petrel's default

inline bool is_success(const HttpResponse& response) {
  return response.status >= 200 && response.status < 300;
}

// Prints the body as received, newline-terminated.
inline void print_raw(std::ostream& out, std::string_view body) {
  out << body;
  if (body.empty() || body.back() != '\n') {
    out << '\n';
  }
}

// The "state" string of a {"state": "..."} answer, or empty.
inline std::string state_of(const json& body) {
  if (body.is_object()) {
    auto it = body.find("state");
    if (it != body.end() && it->is_string()) {
      return it->get<std::string>();
    }
  }
  return {};
}

// A relative directory or "unix:" path made absolute against our working directory (the API
// wants absolute paths; petrel's working directory is not ours).
inline std::string absolute_target(std::string_view target, bool is_address) {
  constexpr std::string_view kUnix = "unix:";
  std::string_view path = target;
  if (is_address) {
    if (target.substr(0, kUnix.size()) != kUnix) {
      return std::string(target);  // tcp:, or malformed: the API says what is wrong
    }
    path.remove_prefix(kUnix.size());
  }
  if (path.empty() || path.front() == '/') {
    return std::string(target);
  }
  std::error_code ec;
  auto absolute = std::filesystem::absolute(std::filesystem::path(path), ec);
  if (ec) {
    return std::string(target);
  }
  return (is_address ? std::string(kUnix) : std::string()) + absolute.lexically_normal().string();
}

// body[key] when it is a string, else empty (the server's JSON is untrusted).
inline std::string string_field(const json& body, std::string_view key) {
  if (body.is_object()) {
    auto it = body.find(key);
    if (it != body.end() && it->is_string()) {
      return it->get<std::string>();
    }
  }
  return {};
}

// body[key] when it is a number, else "-".
inline std::string number_text(const json& body, std::string_view key) {
  if (body.is_object()) {
    auto it = body.find(key);
    if (it != body.end() && it->is_number()) {
      return it->dump();
    }
  }
  return "-";
}

// A migration phase after which nothing changes any more.
inline bool is_final_phase(std::string_view phase) {
  return phase == "completed" || phase == "failed" || phase == "cancelled" || phase == "idle";
}

}  // namespace petrel::ctl::detail

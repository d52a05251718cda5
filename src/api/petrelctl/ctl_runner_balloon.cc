// CtlRunner: the balloon verbs (ctl_runner.h): balloon, balloon set SIZE, setmem SIZE and
// balloon stats, over GET/PUT /v1/balloon and GET /v1/balloon/stats (docs/api.md).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/petrelctl/ctl_format.h"
#include "api/petrelctl/ctl_runner.h"
#include "api/petrelctl/ctl_runner_detail.h"

namespace petrel::ctl {

using namespace detail;  // NOLINT: the runner's own helpers

namespace {

// The readable form of a successful balloon answer, or "" when the body is not an object.
std::string readable(Verb verb, const json& body) {
  if (!body.is_object()) {
    return {};
  }
  return verb == Verb::kBalloonStats ? format_balloon_stats(body) : format_balloon(body);
}

}  // namespace

int CtlRunner::balloon_info() {
  return balloon_answer(client_.request("GET", "/v1/balloon"));
}

int CtlRunner::balloon_set() {
  const char* field = command_.verb == Verb::kSetmem ? "guest_memory_bytes" : "target_bytes";
  return balloon_answer(
      client_.request("PUT", "/v1/balloon", json{{field, command_.size_bytes}}.dump()));
}

int CtlRunner::balloon_stats() {
  return balloon_answer(client_.request("GET", "/v1/balloon/stats"));
}

int CtlRunner::balloon_answer(const Result<HttpResponse>& response) {
  if (auto done = settle(response, command_.json)) {
    return *done;
  }
  std::string text = readable(command_.verb, json::parse(response->body, nullptr, false));
  if (text.empty()) {
    return fail_unexpected(*response);
  }
  out_ << text;
  return kExitOk;
}

}  // namespace petrel::ctl

// Fuzz target: the control API's request path, from raw bytes to a response: Beast's request
// parser configured exactly as ApiSession configures it (configure_request_parser, default
// ApiLimits), to_api_request, and the real Router with add_vm_routes, add_metrics_routes,
// add_migration_routes and add_balloon_routes (with a balloon present)
// over a FakeVmControl (tests/unit/fake_vm_control.h).
//
// Input: one or more HTTP/1.1 requests back to back (pipelined, as a client may send them).
// Each complete request is dispatched, so a sequence can walk the lifecycle; parsing stops at
// the first incomplete or malformed request. A fresh VM and router per input.
//
// Besides "never crash or hang", the target checks what the API promises: only the
// documented statuses (no 500: the fake never fails, so a 500 is a handler that threw), every
// JSON response parses, every error body has error.code (and error.state for a 409), a 405
// carries Allow, and an event stream produces one JSON line per chunk and unsubscribes when
// it ends.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <nlohmann/json.hpp>

#include "../unit/fake_vm_control.h"
#include "api/api_counters.h"
#include "api/api_session.h"
#include "api/balloon_routes.h"
#include "api/metrics_routes.h"
#include "api/migration_routes.h"
#include "api/router.h"
#include "api/vm_routes.h"

namespace {

using petrel::ApiResponse;
using petrel::ApiStreamSink;

constexpr std::size_t kMaxRequests = 64;
constexpr std::size_t kSinkLimit = 64;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_api_request: invariant broken: %s\n", what);
  std::abort();
}

void expect(bool ok, const char* what) {
  if (!ok) {
    fail(what);
  }
}

class CollectSink final : public ApiStreamSink {
 public:
  bool push(std::string chunk) override {
    if (chunks.size() >= kSinkLimit) {
      return false;
    }
    chunks.push_back(std::move(chunk));
    return true;
  }
  std::vector<std::string> chunks;
};

void check_line(const std::string& chunk) {
  expect(!chunk.empty() && chunk.back() == '\n', "an event chunk is one line");
  expect(chunk.find('\n') == chunk.size() - 1, "an event chunk is one line");
  auto line = nlohmann::json::parse(chunk, nullptr, false);
  expect(line.is_object() && line.contains("type"), "an event line is a JSON object");
}

void check_response(const ApiResponse& res, petrel::testing::FakeVmControl& vm) {
  switch (res.status) {
    case 200:
    case 202:
    case 400:
    case 404:
    case 405:
    case 409:
      break;
    default:
      fail("unexpected status");
  }
  if (res.stream) {
    expect(res.status == 200, "streams answer 200");
    auto sink = std::make_shared<CollectSink>();
    res.stream->start(sink);
    vm.publish("panic", {{"message", "fuzz"}});
    for (const auto& chunk : sink->chunks) {
      check_line(chunk);
    }
    check_line(res.stream->overflow_chunk());
    return;
  }
  if (res.content_type != "application/json") {
    expect(res.status == 200, "only metrics text is not JSON");
    return;
  }
  auto body = nlohmann::json::parse(res.body, nullptr, false);
  expect(!body.is_discarded(), "a JSON response parses");
  if (res.status >= 400) {
    expect(body.contains("error") && body["error"].contains("code") &&
               body["error"]["code"].is_string(),
           "an error has a code");
    expect(res.status != 409 || body["error"].contains("state"), "a 409 has the state");
  }
  if (res.status == 405) {
    bool allow = false;
    for (const auto& [name, value] : res.headers) {
      allow = allow || (name == "Allow" && !value.empty());
    }
    expect(allow, "a 405 has Allow");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  petrel::testing::FakeVmControl vm;
  auto counters = std::make_shared<petrel::ApiCounters>();
  petrel::Router router;
  expect(petrel::add_vm_routes(router, vm).ok(), "vm routes");
  expect(petrel::add_metrics_routes(router, vm, counters).ok(), "metrics routes");
  expect(petrel::add_migration_routes(router, vm).ok(), "migration routes");
  expect(petrel::add_balloon_routes(router, vm).ok(), "balloon routes");
  vm.set_balloon_present(true);
  petrel::ApiLimits limits;

  std::size_t offset = 0;
  for (std::size_t n = 0; n < kMaxRequests && offset < size; ++n) {
    petrel::HttpRequestParser parser;
    petrel::configure_request_parser(parser, limits);
    parser.eager(true);
    boost::system::error_code ec;
    while (!parser.is_done() && offset < size) {
      std::size_t used = parser.put(boost::asio::buffer(data + offset, size - offset), ec);
      offset += used;
      if (ec || used == 0) {
        break;
      }
    }
    if (!parser.is_done()) {
      break;  // incomplete, malformed or over a limit: the session answers 400/413 and closes
    }
    {
      ApiResponse res = router.dispatch(petrel::to_api_request(parser.get()));
      counters->response(res.status);
      check_response(res, vm);
    }
    expect(vm.subscriber_count() == 0, "a finished stream unsubscribes");
  }
  return 0;
}

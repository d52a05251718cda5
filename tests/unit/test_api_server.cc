// ApiServer + Router over a real Unix socket: the server's io_context runs on a jthread, the
// test talks raw HTTP/1.1 through a plain client socket (and curl, when installed).
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "api/api_error.h"
#include "api/api_server.h"
#include "api/router.h"
#include "api_test_client.h"
#include "scratch_dir.h"
#include "vmm/base/unique_fd.h"

using petrel::ApiLimits;
using petrel::ApiRequest;
using petrel::ApiResponse;
using petrel::ApiServer;
using petrel::Router;
using petrel::UniqueFd;
using petrel::testing::closed_by_server;
using petrel::testing::connect_to;
using petrel::testing::error_code_of;
using petrel::testing::http_exchange;
using petrel::testing::HttpAnswer;
using petrel::testing::read_response;
using petrel::testing::ScratchDir;
using petrel::testing::send_all;

namespace {

ApiResponse ok_json(std::string body) {
  ApiResponse res;
  res.body = std::move(body);
  return res;
}

std::shared_ptr<Router> test_router() {
  auto router = std::make_shared<Router>();
  REQUIRE(
      router->add("GET", "/v1/ping", [](const ApiRequest&) { return ok_json(R"({"pong":true})"); })
          .ok());
  REQUIRE(router
              ->add("PUT", "/v1/echo",
                    [](const ApiRequest& req) {
                      return ok_json(nlohmann::json{{"body", req.body}}.dump());
                    })
              .ok());
  REQUIRE(router
              ->add("GET", "/v1/echo",
                    [](const ApiRequest& req) {
                      return ok_json(nlohmann::json{{"query", req.query}}.dump());
                    })
              .ok());
  REQUIRE(router
              ->add("GET", "/v1/throw",
                    [](const ApiRequest&) -> ApiResponse { throw std::runtime_error("boom"); })
              .ok());
  REQUIRE(router
              ->add("GET", "/v1/busy",
                    [](const ApiRequest&) {
                      return petrel::error_response(
                          petrel::Error(petrel::ErrorCode::kState, "the VM is paused"));
                    })
              .ok());
  return router;
}

class RunningServer : public petrel::testing::RunningServer {
 public:
  explicit RunningServer(const std::filesystem::path& path, ApiLimits limits = {})
      : petrel::testing::RunningServer(path, test_router(), limits) {}
};

}  // namespace

TEST_CASE("api: a registered route answers JSON", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  RunningServer server(path);
  HttpAnswer a = http_exchange(path, "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(a.status == 200);
  CHECK(a.head.find("Content-Type: application/json") != std::string::npos);
  CHECK(nlohmann::json::parse(a.body).at("pong") == true);

  a = http_exchange(path, "GET /v1/echo?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(nlohmann::json::parse(a.body).at("query") == "x=1");
  a = http_exchange(path, "PUT /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(nlohmann::json::parse(a.body).at("body") == "hello");
}

TEST_CASE("api: errors are JSON with stable codes", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  RunningServer server(path);

  HttpAnswer a = http_exchange(path, "GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(a.status == 404);
  CHECK(error_code_of(a) == "not_found");
  auto chain = nlohmann::json::parse(a.body).at("error").at("chain");
  CHECK(chain.is_array());
  CHECK(chain.size() == 1);

  a = http_exchange(path, "DELETE /v1/echo HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(a.status == 405);
  CHECK(error_code_of(a) == "method_not_allowed");
  CHECK(a.head.find("Allow: GET, PUT") != std::string::npos);

  a = http_exchange(path, "GET /v1/throw HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(a.status == 500);
  CHECK(error_code_of(a) == "internal");

  a = http_exchange(path, "GET /v1/busy HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(a.status == 409);
  CHECK(error_code_of(a) == "state");
}

TEST_CASE("api: a malformed request line answers 400 and closes", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  RunningServer server(path);
  UniqueFd fd = connect_to(path);
  send_all(fd.get(), "THIS IS NOT HTTP\r\n\r\n");
  std::string pending;
  HttpAnswer a = read_response(fd.get(), pending);
  CHECK(a.status == 400);
  CHECK(error_code_of(a) == "bad_request");
  CHECK(closed_by_server(fd.get()));
}

TEST_CASE("api: a body over the limit answers 413", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  RunningServer server(path);
  std::string body(100 * 1024, 'x');
  HttpAnswer a = http_exchange(path, "PUT /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                         std::to_string(body.size()) + "\r\n\r\n" + body);
  CHECK(a.status == 413);
  CHECK(error_code_of(a) == "body_too_large");
}

TEST_CASE("api: keep-alive serves two requests on one connection", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  RunningServer server(path);
  UniqueFd fd = connect_to(path);
  std::string pending;
  send_all(fd.get(), "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_response(fd.get(), pending).status == 200);
  send_all(fd.get(), "GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_response(fd.get(), pending).status == 404);
  send_all(fd.get(), "GET /v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(read_response(fd.get(), pending).status == 200);
  CHECK(closed_by_server(fd.get()));
}

TEST_CASE("api: a slow client is dropped after the timeout", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  ApiLimits limits;
  limits.io_timeout = std::chrono::milliseconds(200);
  RunningServer server(path, limits);
  UniqueFd fd = connect_to(path);
  send_all(fd.get(), "GET /v1/ping HTTP/1.1\r\n");  // never finishes the head
  auto start = std::chrono::steady_clock::now();
  CHECK(closed_by_server(fd.get()));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
}

TEST_CASE("api: connections over the session cap answer 503", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  ApiLimits limits;
  limits.max_sessions = 1;
  RunningServer server(path, limits);
  UniqueFd first = connect_to(path);
  std::string pending;
  send_all(first.get(), "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(read_response(first.get(), pending).status == 200);  // first session is live
  HttpAnswer a = http_exchange(path, "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(a.status == 503);
  CHECK(error_code_of(a) == "too_many_sessions");
}

TEST_CASE("api: the socket is 0600, exclusive, and removed with the server", "[api]") {
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  {
    RunningServer server(path);
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);

    boost::asio::io_context io;
    auto second = ApiServer::create(io, path, test_router());
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().code() == petrel::ErrorCode::kInvalidArgument);
    CHECK(http_exchange(path, "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n").status == 200);
  }
  CHECK_FALSE(std::filesystem::exists(path));

  // A stale socket file (nobody listening) is replaced.
  {
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(::bind(stale.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  }
  REQUIRE(std::filesystem::exists(path));
  RunningServer server(path);
  CHECK(http_exchange(path, "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n").status == 200);
}

TEST_CASE("api: curl --unix-socket works", "[api]") {
  if (!std::filesystem::exists("/usr/bin/curl")) {
    SUCCEED("curl not installed");
    return;
  }
  ScratchDir dir;
  auto path = dir.path() / "api.sock";
  RunningServer server(path);
  std::string cmd = "/usr/bin/curl -s -m 5 -w '\\n%{http_code}' --unix-socket " + path.string() +
                    " http://localhost/v1/ping";
  int status = -1;
  std::string out = petrel::testing::run_command(cmd, status);
  CHECK(status == 0);
  CHECK(out == "{\"pong\":true}\n200");
}

// Test helpers for the control API over a real Unix socket: a server whose io_context runs on
// its own thread, and a raw HTTP/1.1 client (Content-Length and chunked responses).
#pragma once

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "api/api_counters.h"
#include "api/api_server.h"
#include "api/router.h"
#include "vmm/base/unique_fd.h"

namespace petrel::testing {

// An ApiServer whose io_context runs on its own thread; destroyed on that thread.
class RunningServer {
 public:
  RunningServer(const std::filesystem::path& path, std::shared_ptr<const Router> router,
                ApiLimits limits = {}, std::shared_ptr<ApiCounters> counters = nullptr) {
    auto server = ApiServer::create(io_, path, std::move(router), limits, std::move(counters));
    REQUIRE(server.ok());
    server_ = std::move(server).value();
    server_->start();
    thread_ = std::jthread([this] { io_.run(); });
  }
  ~RunningServer() { stop(); }

  // Destroys the server on its loop thread, then ends the loop. Idempotent.
  void stop() {
    if (!thread_.joinable()) {
      return;
    }
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      server_.reset();
      done.set_value();
    });
    done.get_future().wait();
    work_.reset();
    io_.stop();
    thread_.join();
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      io_.get_executor()};
  std::unique_ptr<ApiServer> server_;
  std::jthread thread_;  // last: joined before the rest goes away
};

inline UniqueFd connect_to(const std::filesystem::path& path, int timeout_s = 5) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  timeval tv{timeout_s, 0};  // a broken server fails the test instead of hanging it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

inline void send_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) {
      return;  // the server may close early (413); the test checks the answer
    }
    done += static_cast<std::size_t>(n);
  }
}

struct HttpAnswer {
  int status = 0;
  std::string head;
  std::string body;

  bool has_header(const std::string& line) const { return head.find(line) != std::string::npos; }
};

// Appends what the socket has to `pending`; false on EOF, error or timeout.
inline bool receive_more(int fd, std::string& pending) {
  char buf[4096];
  ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  if (n <= 0) {
    return false;
  }
  pending.append(buf, static_cast<std::size_t>(n));
  return true;
}

// Reads one response head; status 0 if the connection ended first.
inline HttpAnswer read_head(int fd, std::string& pending) {
  HttpAnswer answer;
  for (;;) {
    auto head_end = pending.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      answer.head = pending.substr(0, head_end);
      answer.status = std::stoi(answer.head.substr(9, 3));
      pending.erase(0, head_end + 4);
      return answer;
    }
    if (!receive_more(fd, pending)) {
      return answer;
    }
  }
}

// Reads one response (Content-Length framed); status 0 if the connection ended first.
inline HttpAnswer read_response(int fd, std::string& pending) {
  HttpAnswer answer = read_head(fd, pending);
  if (answer.status == 0) {
    return answer;
  }
  std::size_t length = 0;
  auto cl = answer.head.find("Content-Length: ");
  if (cl != std::string::npos) {
    length = std::stoul(answer.head.substr(cl + 16));
  }
  while (pending.size() < length) {
    if (!receive_more(fd, pending)) {
      return HttpAnswer{};
    }
  }
  answer.body = pending.substr(0, length);
  pending.erase(0, length);
  return answer;
}

// Reads the next chunk of a chunked body: its data, "" for the terminating chunk, nullopt if
// the connection ended (or timed out) first.
inline std::optional<std::string> read_chunk(int fd, std::string& pending) {
  for (;;) {
    auto line_end = pending.find("\r\n");
    if (line_end != std::string::npos) {
      std::size_t size = std::stoul(pending.substr(0, line_end), nullptr, 16);
      if (pending.size() >= line_end + 2 + size + 2) {
        std::string data = pending.substr(line_end + 2, size);
        REQUIRE(pending.substr(line_end + 2 + size, 2) == "\r\n");
        pending.erase(0, line_end + 2 + size + 2);
        return data;
      }
    }
    if (!receive_more(fd, pending)) {
      return std::nullopt;
    }
  }
}

inline HttpAnswer http_exchange(const std::filesystem::path& path, const std::string& request) {
  UniqueFd fd = connect_to(path);
  send_all(fd.get(), request);
  std::string pending;
  return read_response(fd.get(), pending);
}

// True once the server closed the connection (EOF), false on data or timeout.
inline bool closed_by_server(int fd) {
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

inline std::string error_code_of(const HttpAnswer& answer) {
  return nlohmann::json::parse(answer.body).at("error").at("code").get<std::string>();
}

// Runs a shell command; returns its stdout and sets `status` to its exit status.
inline std::string run_command(const std::string& cmd, int& status) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) {
    out.append(buf, n);
  }
  status = ::pclose(pipe);
  return out;
}

inline bool have_curl() {
  return std::filesystem::exists("/usr/bin/curl");
}

}  // namespace petrel::testing

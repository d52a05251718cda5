#include "api/petrelctl/http_client.h"

#include <sys/un.h>

#include <cerrno>
#include <exception>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace petrel::ctl {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Socket = asio::local::stream_protocol::socket;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// One connection: the loop its asynchronous operations run on, each bounded by a deadline.
class Connection {
 public:
  Connection(std::string path, Clock::time_point deadline)
      : path_(std::move(path)), deadline_(deadline) {}

  Result<void> connect() {
    if (path_.size() >= sizeof(sockaddr_un::sun_path)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("socket path too long ({} bytes): {}", path_.size(), path_));
    }
    error_code result;
    socket_.async_connect(asio::local::stream_protocol::endpoint(path_),
                          [&result](error_code ec) { result = ec; });
    PETREL_TRY(run("connecting"));
    if (result) {
      return Error(ErrorCode::kIo, fmt::format("cannot connect to {}: {}", path_, result.message()),
                   result.value());
    }
    return ok();
  }

  Result<void> write(http::request<http::string_body>& request) {
    error_code result;
    http::async_write(socket_, request, [&result](error_code ec, size_t) { result = ec; });
    PETREL_TRY(run("sending the request"));
    if (result) {
      return Error(ErrorCode::kIo, fmt::format("{}: cannot send: {}", path_, result.message()),
                   result.value());
    }
    return ok();
  }

  // Reads the whole message (read_header: only the header) into `parser`.
  template <typename Parser>
  Result<void> read(Parser& parser, bool header_only) {
    error_code result;
    auto done = [&result](error_code ec, size_t) { result = ec; };
    if (header_only) {
      http::async_read_header(socket_, buffer_, parser, done);
    } else {
      http::async_read(socket_, buffer_, parser, done);
    }
    PETREL_TRY(run("waiting for the answer"));
    return check_read(result);
  }

  // Reads what the body has next into `parser` (a buffer_body parser), without a deadline.
  template <typename Parser>
  Result<void> read_some_body(Parser& parser) {
    error_code ec;
    http::read_some(socket_, buffer_, parser, ec);
    if (ec == http::error::need_buffer) {
      ec = {};
    }
    return check_read(ec);
  }

 private:
  Result<void> check_read(error_code ec) {
    if (!ec) {
      return ok();
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec == asio::error::eof || ec.category() == asio::error::get_system_category()) {
      return Error(
          ErrorCode::kIo,
          fmt::format("{}: the connection ended before the answer: {}", path_, ec.message()),
          ec.category() == asio::error::get_system_category() ? ec.value() : 0);
    }
    return Error(ErrorCode::kInternal,
                 fmt::format("{}: not a valid HTTP answer: {}", path_, ec.message()));
  }

  // Runs the pending operation until its handler ran or the deadline passed; on timeout the
  // socket is closed (cancelling it) and the handler drained.
  Result<void> run(std::string_view what) {
    io_.restart();
    while (io_.run_one_until(deadline_) > 0) {
    }
    if (!io_.stopped()) {
      error_code ignored;
      socket_.close(ignored);
      io_.restart();
      io_.run();
      return Error(ErrorCode::kIo, fmt::format("{}: timed out {}", path_, what), ETIMEDOUT);
    }
    return ok();
  }

  std::string path_;
  Clock::time_point deadline_;
  asio::io_context io_{1};
  Socket socket_{io_};
  beast::flat_buffer buffer_;
};

http::request<http::string_body> make_request(http::verb verb, std::string_view target,
                                              std::string_view body) {
  http::request<http::string_body> request{verb, std::string(target), 11};
  request.set(http::field::host, "localhost");
  request.set(http::field::user_agent, "petrelctl/" PETREL_VERSION);
  request.keep_alive(false);
  if (!body.empty()) {
    request.set(http::field::content_type, "application/json");
    request.body() = std::string(body);
  }
  request.prepare_payload();
  return request;
}

template <typename Message>
HttpResponse to_response(Message& message) {
  HttpResponse response;
  response.status = message.result_int();
  response.content_type = std::string(message[http::field::content_type]);
  return response;
}

}  // namespace

HttpClient::HttpClient(std::string socket_path, std::chrono::milliseconds timeout)
    : socket_path_(std::move(socket_path)), timeout_(timeout) {}

Result<HttpResponse> HttpClient::request(std::string_view method, std::string_view target,
                                         std::string_view body) try {
  http::verb verb = http::string_to_verb({method.data(), method.size()});
  if (verb == http::verb::unknown) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("unknown HTTP method {}", method));
  }
  Connection connection(socket_path_, Clock::now() + timeout_);
  PETREL_TRY(connection.connect());
  auto request = make_request(verb, target, body);
  PETREL_TRY(connection.write(request));
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxBody);
  PETREL_TRY(connection.read(parser, false));
  HttpResponse response = to_response(parser.get());
  response.body = std::move(parser.get().body());
  return response;
} catch (const std::exception& e) {
  return Error(ErrorCode::kInternal, fmt::format("{}: {}", socket_path_, e.what()));
}

Result<HttpResponse> HttpClient::stream(std::string_view target,
                                        const std::function<bool(std::string_view)>& on_data) try {
  Connection connection(socket_path_, Clock::now() + timeout_);
  PETREL_TRY(connection.connect());
  auto request = make_request(http::verb::get, target, {});
  PETREL_TRY(connection.write(request));
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);  // a long-lived stream
  PETREL_TRY(connection.read(parser, true));
  HttpResponse response = to_response(parser.get());
  if (response.status != 200) {
    http::response_parser<http::string_body> rest(std::move(parser));
    rest.body_limit(kMaxBody);
    PETREL_TRY(connection.read(rest, false));
    response.body = std::move(rest.get().body());
    return response;
  }
  char buffer[4096];
  while (!parser.is_done()) {
    parser.get().body().data = buffer;
    parser.get().body().size = sizeof(buffer);
    auto read = connection.read_some_body(parser);
    size_t n = sizeof(buffer) - parser.get().body().size;
    if (n > 0 && !on_data(std::string_view(buffer, n))) {
      break;
    }
    if (!read.ok()) {
      // The stream ends when petrel exits: a closed connection is its end, not an error.
      if (read.error().code() == ErrorCode::kIo) {
        break;
      }
      return std::move(read).error();
    }
  }
  return response;
} catch (const std::exception& e) {
  return Error(ErrorCode::kInternal, fmt::format("{}: {}", socket_path_, e.what()));
}

}  // namespace petrel::ctl

#include "api/api_session.h"

#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "api/api_error.h"

namespace petrel {
namespace http = boost::beast::http;

ApiSession::ApiSession(boost::asio::local::stream_protocol::socket socket,
                       std::shared_ptr<const Router> router, const ApiLimits& limits)
    : socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      router_(std::move(router)),
      limits_(limits) {}

void ApiSession::start() {
  read_next();
}

void ApiSession::reject(ApiResponse response) {
  write(std::move(response), false);
}

void ApiSession::close() {
  disarm();
  boost::system::error_code ec;
  socket_.shutdown(boost::asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
}

void ApiSession::arm_deadline() {
  uint64_t id = ++deadline_;
  armed_ = true;
  timer_.expires_after(limits_.io_timeout);
  timer_.async_wait([self = shared_from_this(), id](boost::system::error_code ec) {
    if (!ec && self->armed_ && self->deadline_ == id) {
      spdlog::debug("api: dropped a client that was too slow");
      self->close();
    }
  });
}

void ApiSession::disarm() {
  armed_ = false;
  timer_.cancel();
}

void ApiSession::read_next() {
  parser_.emplace();
  parser_->body_limit(limits_.max_body_bytes);
  arm_deadline();
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                     self->on_read(ec);
                   });
}

void ApiSession::on_read(boost::system::error_code ec) {
  disarm();
  if (ec == http::error::body_limit) {
    write(error_response(413, "payload_too_large",
                         fmt::format("the request body exceeds {} bytes", limits_.max_body_bytes)),
          false);
    return;
  }
  if (ec && ec.category() == make_error_code(http::error::bad_target).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    write(error_response(400, "bad_request", "malformed HTTP request: " + ec.message()), false);
    return;
  }
  if (ec) {  // end of stream, the deadline closed the socket, the client went away
    close();
    return;
  }
  const auto& msg = parser_->get();
  ApiRequest req;
  req.method = std::string(msg.method_string().data(), msg.method_string().size());
  std::string_view target(msg.target().data(), msg.target().size());
  auto question = target.find('?');
  req.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) {
    req.query = std::string(target.substr(question + 1));
  }
  req.body = msg.body();
  bool keep_alive = msg.keep_alive();
  write(router_->dispatch(req), keep_alive);
}

void ApiSession::write(ApiResponse response, bool keep_alive) {
  response_ = HttpResponse(static_cast<http::status>(response.status), 11);
  response_.set(http::field::server, "petrel");
  response_.set(http::field::content_type, "application/json");
  for (auto& [name, value] : response.headers) {
    response_.set(name, value);
  }
  response_.body() = std::move(response.body);
  response_.keep_alive(keep_alive);
  response_.prepare_payload();
  arm_deadline();
  http::async_write(
      socket_, response_,
      [self = shared_from_this(), keep_alive](boost::system::error_code ec, std::size_t) {
        self->disarm();
        if (ec || !keep_alive) {
          self->close();
          return;
        }
        self->read_next();
      });
}

}  // namespace petrel

#include "api/api_session.h"

#include <sys/socket.h>

#include <cerrno>
#include <deque>
#include <exception>
#include <mutex>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/write.hpp>

#include "api/api_error.h"

namespace petrel {
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kLastChunk = "0\r\n\r\n";

void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) {
    return;  // an empty chunk would end the body
  }
  out += fmt::format("{:x}\r\n", data.size());
  out += data;
  out += "\r\n";
}

}  // namespace

// The bounded queue between a stream's producer (any thread) and the session's thread.
class ApiSession::StreamQueue final : public ApiStreamSink {
 public:
  StreamQueue(std::weak_ptr<ApiSession> session, boost::asio::any_io_executor executor,
              std::size_t limit)
      : session_(std::move(session)), executor_(std::move(executor)), limit_(limit) {}

  bool push(std::string chunk) override {
    std::lock_guard lock(mutex_);
    if (ended_ || overflowed_) {
      return false;
    }
    if (chunks_.size() >= limit_) {
      overflowed_ = true;
      notify_locked();
      return false;
    }
    if (!chunk.empty()) {
      chunks_.push_back(std::move(chunk));
      notify_locked();
    }
    return true;
  }

  // Session thread: everything queued so far; `overflowed` tells whether the queue overflowed.
  std::deque<std::string> take(bool& overflowed) {
    std::lock_guard lock(mutex_);
    notified_ = false;
    overflowed = overflowed_;
    return std::exchange(chunks_, {});
  }

  // No push is accepted afterwards.
  void end() {
    std::lock_guard lock(mutex_);
    ended_ = true;
    chunks_.clear();
  }

 private:
  // One posted drain at a time; take() re-arms it.
  void notify_locked() {
    if (notified_) {
      return;
    }
    notified_ = true;
    boost::asio::post(executor_, [weak = session_] {
      if (auto session = weak.lock()) {
        session->drain_stream();
      }
    });
  }

  const std::weak_ptr<ApiSession> session_;
  const boost::asio::any_io_executor executor_;
  const std::size_t limit_;
  std::mutex mutex_;
  // Guarded by mutex_.
  std::deque<std::string> chunks_;
  bool notified_ = false;
  bool overflowed_ = false;
  bool ended_ = false;
};

void configure_request_parser(HttpRequestParser& parser, const ApiLimits& limits) {
  parser.body_limit(limits.max_body_bytes);
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
}

ApiRequest to_api_request(const HttpRequest& message) {
  ApiRequest req;
  req.method = std::string(message.method_string().data(), message.method_string().size());
  std::string_view target(message.target().data(), message.target().size());
  auto question = target.find('?');
  req.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) {
    req.query = std::string(target.substr(question + 1));
  }
  req.body = message.body();
  return req;
}

ApiSession::ApiSession(boost::asio::local::stream_protocol::socket socket,
                       std::shared_ptr<const Router> router, const ApiLimits& limits,
                       std::shared_ptr<ApiCounters> counters)
    : socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      router_(std::move(router)),
      limits_(limits),
      counters_(std::move(counters)) {
  counters_->connection_opened();
}

ApiSession::~ApiSession() {
  close();
}

void ApiSession::start() {
  read_next();
}

void ApiSession::reject(ApiResponse response) {
  write(std::move(response), false);
}

void ApiSession::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  disarm();
  if (queue_) {
    if (!finishing_) {
      // Best effort, never blocking: finish the chunk in flight and end the body.
      std::string rest = out_.substr(sent_);
      rest += kLastChunk;
      [[maybe_unused]] ssize_t n =
          ::send(socket_.native_handle(), rest.data(), rest.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    queue_->end();
    stream_.reset();  // unsubscribes the producer
    counters_->stream_closed();
  }
  boost::system::error_code ec;
  socket_.shutdown(boost::asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
  counters_->connection_closed();
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
  configure_request_parser(*parser_, limits_);
  arm_deadline();
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                     self->on_read(ec);
                   });
}

void ApiSession::on_read(boost::system::error_code ec) {
  disarm();
  if (closed_) {
    return;
  }
  if (ec == http::error::body_limit) {
    write(error_response(413, "body_too_large",
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
  bool keep_alive = msg.keep_alive();
  ApiResponse response = router_->dispatch(to_api_request(msg));
  if (response.stream) {
    start_stream(std::move(response));
    return;
  }
  write(std::move(response), keep_alive);
}

void ApiSession::write(ApiResponse response, bool keep_alive) {
  counters_->response(response.status);
  response_ = HttpResponse(static_cast<http::status>(response.status), 11);
  response_.set(http::field::server, "petrel");
  response_.set(http::field::content_type, response.content_type);
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

void ApiSession::start_stream(ApiResponse response) {
  counters_->response(response.status);
  counters_->stream_opened();
  stream_ = std::move(response.stream);
  queue_ = std::make_shared<StreamQueue>(weak_from_this(), socket_.get_executor(),
                                         limits_.max_stream_queue);
  auto reason = http::obsolete_reason(static_cast<http::status>(response.status));
  out_ = fmt::format(
      "HTTP/1.1 {} {}\r\nServer: petrel\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n"
      "Cache-Control: no-store\r\nConnection: close\r\n",
      response.status, std::string_view(reason.data(), reason.size()), response.content_type);
  for (const auto& [name, value] : response.headers) {
    out_ += fmt::format("{}: {}\r\n", name, value);
  }
  out_ += "\r\n";
  sent_ = 0;
  try {
    stream_->start(queue_);
  } catch (const std::exception& e) {
    spdlog::warn("api: event stream failed to start: {}", e.what());
    queue_->end();
    out_ += kLastChunk;
    finishing_ = true;
  }
  watch_client();
  drain_stream();
}

void ApiSession::drain_stream() {
  if (closed_ || write_waiting_) {
    return;
  }
  for (;;) {
    if (sent_ == out_.size()) {
      out_.clear();
      sent_ = 0;
      if (finishing_) {
        close();
        return;
      }
      bool overflowed = false;
      for (const auto& chunk : queue_->take(overflowed)) {
        append_chunk(out_, chunk);
      }
      if (overflowed) {
        queue_->end();
        append_chunk(out_, stream_->overflow_chunk());
        out_ += kLastChunk;
        finishing_ = true;
      }
      if (out_.empty()) {
        return;  // idle until the producer pushes
      }
    }
    ssize_t n = ::send(socket_.native_handle(), out_.data() + sent_, out_.size() - sent_,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      write_waiting_ = true;
      arm_deadline();
      socket_.async_wait(boost::asio::socket_base::wait_write,
                         [self = shared_from_this()](boost::system::error_code ec) {
                           self->write_waiting_ = false;
                           self->disarm();
                           if (ec) {
                             self->close();
                             return;
                           }
                           self->drain_stream();
                         });
      return;
    }
    close();  // the client went away (EPIPE, ECONNRESET)
    return;
  }
}

void ApiSession::watch_client() {
  socket_.async_wait(boost::asio::socket_base::wait_read, [self = shared_from_this()](
                                                              boost::system::error_code ec) {
    if (ec || self->closed_) {
      self->close();
      return;
    }
    char scratch[512];
    ssize_t n = ::recv(self->socket_.native_handle(), scratch, sizeof(scratch), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      self->close();  // EOF or error: the client is gone
      return;
    }
    self->watch_client();  // bytes after the request are ignored
  });
}

}  // namespace petrel

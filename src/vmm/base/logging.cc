#include "vmm/base/logging.h"

#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace petrel {

namespace {

void append_json_string(std::string_view s, spdlog::memory_buf_t& out) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out.append(std::string_view("\\\""));
        break;
      case '\\':
        out.append(std::string_view("\\\\"));
        break;
      case '\n':
        out.append(std::string_view("\\n"));
        break;
      case '\r':
        out.append(std::string_view("\\r"));
        break;
      case '\t':
        out.append(std::string_view("\\t"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// {"ts":"2026-11-21T10:00:00.123456Z","level":"info","msg":"..."} per line.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto us = std::chrono::time_point_cast<std::chrono::microseconds>(msg.time);
    auto secs = std::chrono::time_point_cast<std::chrono::seconds>(us);
    fmt::format_to(std::back_inserter(dest), "{{\"ts\":\"{:%Y-%m-%dT%H:%M:%S}.{:06d}Z\",\"level\":",
                   fmt::gmtime(std::chrono::system_clock::to_time_t(secs)), (us - secs).count());
    auto level = spdlog::level::to_string_view(msg.level);
    append_json_string(std::string_view(level.data(), level.size()), dest);
    dest.append(std::string_view(",\"thread\":"));
    fmt::format_to(std::back_inserter(dest), "{}", msg.thread_id);
    dest.append(std::string_view(",\"msg\":"));
    append_json_string(std::string_view(msg.payload.data(), msg.payload.size()), dest);
    dest.append(std::string_view("}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// sd-daemon(3) levels: <3> error, <4> warning, <5> notice, <6> info, <7> debug.
class JournalFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    int priority = 6;
    switch (msg.level) {
      case spdlog::level::critical:
        priority = 2;
        break;
      case spdlog::level::err:
        priority = 3;
        break;
      case spdlog::level::warn:
        priority = 4;
        break;
      case spdlog::level::trace:
      case spdlog::level::debug:
        priority = 7;
        break;
      default:
        break;
    }
    fmt::format_to(std::back_inserter(dest), "<{}>petrel: ", priority);
    // One journal entry per line: a message's own newlines would start unprefixed entries.
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      dest.push_back(c == '\n' ? ' ' : c);
    }
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JournalFormatter>();
  }
};

}  // namespace

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  struct stat st {};
  if (stream == nullptr || ::fstat(STDERR_FILENO, &st) != 0) {
    return false;
  }
  return std::string_view(stream) == fmt::format("{}:{}", st.st_dev, st.st_ino);
}

Result<void> setup_logging(std::string_view level, LogStyle style) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return Error(ErrorCode::kInvalidArgument, fmt::format("unknown log level '{}'", level));
  }
  auto logger =
      std::make_shared<spdlog::logger>("petrel", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (style == LogStyle::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else if (style == LogStyle::kJournal) {
    logger->set_formatter(std::make_unique<JournalFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%f %l petrel: %v");
  }
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(lvl);
  return {};
}

}  // namespace petrel

#include "api/petrelctl/ctl_runner.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/petrelctl/ctl_format.h"
#include "api/petrelctl/ctl_runner_detail.h"

namespace petrel::ctl {

using namespace detail;  // NOLINT: the runner's own helpers

CtlRunner::CtlRunner(const CtlCommand& command, std::ostream& out, std::ostream& err)
    : command_(command), out_(out), err_(err), client_(command.socket, command.request_timeout) {}

int CtlRunner::run() try {
  switch (command_.verb) {
    case Verb::kInfo:
      return get_and_print("/v1/vm");
    case Verb::kState:
      return get_and_print("/v1/vm/state");
    case Verb::kConfig:
      return get_and_print("/v1/vm/config");
    case Verb::kStart:
    case Verb::kPause:
    case Verb::kResume:
    case Verb::kReboot:
    case Verb::kStop:
      return action(to_string(command_.verb));
    case Verb::kShutdown:
      return shutdown();
    case Verb::kMetrics:
      return metrics();
    case Verb::kEvents:
      return events();
    case Verb::kList:
      return list();
    case Verb::kSnapshot:
      return snapshot();
    case Verb::kRestore:
      return restore();
    case Verb::kMigrate:
    case Verb::kMigrateReceive:
      return migrate_start();
    case Verb::kMigrateStatus:
      return migrate_status();
    case Verb::kMigrateCancel:
      return migrate_cancel();
    case Verb::kBalloon:
      return balloon_info();
    case Verb::kBalloonSet:
    case Verb::kSetmem:
      return balloon_set();
    case Verb::kBalloonStats:
      return balloon_stats();
    case Verb::kHelp:
      out_ << help_text(Verb::kHelp);
      return kExitOk;
  }
  return kExitFailure;
} catch (const std::exception& e) {
  err_ << "petrelctl: " << e.what() << '\n';
  return kExitFailure;
}

int CtlRunner::fail(const Error& error) {
  err_ << "petrelctl: " << error.to_string() << '\n';
  bool unreachable = error.code() == ErrorCode::kIo || error.code() == ErrorCode::kInvalidArgument;
  return unreachable ? kExitUnreachable : kExitFailure;
}

int CtlRunner::fail(const HttpResponse& response) {
  err_ << "petrelctl: " << api_error_message(response.status, response.body) << '\n';
  return response.status == 409 ? kExitState : kExitFailure;
}

std::optional<int> CtlRunner::settle(const Result<HttpResponse>& response, bool raw) {
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
  }
  if (raw) {
    print_raw(out_, response->body);
    return kExitOk;
  }
  return std::nullopt;
}

int CtlRunner::fail_unexpected(const HttpResponse& response) {
  err_ << fmt::format("petrelctl: unexpected answer (HTTP {}): {}\n", response.status,
                      api_error_message(response.status, response.body));
  return kExitFailure;
}

int CtlRunner::get_and_print(std::string_view target) {
  auto response = client_.request("GET", target);
  if (auto done = settle(response, command_.json)) {
    return *done;
  }
  json body = json::parse(response->body, nullptr, false);
  if (!body.is_object()) {
    return fail_unexpected(*response);
  }
  if (command_.verb == Verb::kInfo) {
    out_ << format_info(body);
  } else if (command_.verb == Verb::kState) {
    std::string state = state_of(body);
    if (state.empty()) {
      return fail_unexpected(*response);
    }
    out_ << state << '\n';
  } else {
    out_ << body.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
  }
  return kExitOk;
}

int CtlRunner::action(std::string_view name) {
  auto response = client_.request("PUT", fmt::format("/v1/vm/{}", name));
  if (auto done = settle(response, command_.json)) {
    return *done;
  }
  std::string state = state_of(json::parse(response->body, nullptr, false));
  if (state.empty()) {
    return fail_unexpected(*response);
  }
  out_ << state << '\n';
  return kExitOk;
}

int CtlRunner::shutdown() {
  std::string body;
  if (command_.shutdown_timeout) {
    body = json{{"timeout_ms", command_.shutdown_timeout->count()}}.dump();
  }
  auto response = client_.request("PUT", "/v1/vm/shutdown", body);
  if (auto done = settle(response, false)) {
    return *done;
  }
  if (command_.wait) {
    return wait_for_shut_off();
  }
  if (command_.json) {
    print_raw(out_, response->body);
    return kExitOk;
  }
  std::string state = state_of(json::parse(response->body, nullptr, false));
  out_ << (state.empty() ? "shutting-down" : state) << '\n';
  return kExitOk;
}

int CtlRunner::wait_for_shut_off() {
  auto deadline = std::chrono::steady_clock::now() +
                  command_.shutdown_timeout.value_or(kDefaultShutdownTimeout) + kWaitGrace;
  while (true) {
    auto response = client_.request("GET", "/v1/vm/state");
    if (!response.ok() && response.error().code() == ErrorCode::kIo &&
        response.error().sys_errno() != ETIMEDOUT) {
      // Nobody answers on the socket any more: petrel has exited.
      out_ << (command_.json ? "{\"state\":\"exited\"}" : "exited") << '\n';
      return kExitOk;
    }
    if (response.ok() && is_success(*response)) {
      std::string state = state_of(json::parse(response->body, nullptr, false));
      if (state == "shut-off" || state == "crashed") {
        if (command_.json) {
          print_raw(out_, response->body);
        } else {
          out_ << state << '\n';
        }
        if (state == "crashed") {
          err_ << "petrelctl: the VM crashed while shutting down\n";
          return kExitFailure;
        }
        return kExitOk;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      err_ << "petrelctl: timed out waiting for the VM to shut off\n";
      return kExitFailure;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

int CtlRunner::metrics() {
  auto response =
      client_.request("GET", command_.prometheus ? "/v1/metrics/prometheus" : "/v1/metrics");
  if (auto done = settle(response, false)) {
    return *done;
  }
  if (command_.prometheus || command_.json) {
    print_raw(out_, response->body);
    return kExitOk;
  }
  json body = json::parse(response->body, nullptr, false);
  if (!body.is_object()) {
    return fail_unexpected(*response);
  }
  out_ << format_metrics(body);
  return kExitOk;
}

int CtlRunner::events() {
  std::string target = "/v1/events";
  if (command_.after) {
    target += fmt::format("?after={}", *command_.after);
  }
  std::string pending;  // an incomplete line
  uint64_t printed = 0;
  auto print_line = [&](std::string_view line) {
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      return;
    }
    if (command_.json) {
      out_ << line << '\n';
    } else {
      json event = json::parse(line, nullptr, false);
      out_ << (event.is_object() ? format_event(event)
                                 : "unreadable event: " + api_error_message(0, line))
           << '\n';
    }
    out_.flush();
    ++printed;
  };
  auto on_data = [&](std::string_view data) {
    pending.append(data);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      print_line(std::string_view(pending).substr(start, nl - start));
      if (command_.count && printed >= *command_.count) {
        return false;
      }
    }
    pending.erase(0, start);
    return true;
  };
  auto response = client_.stream(target, on_data);
  if (auto done = settle(response, false)) {
    return *done;
  }
  if (!(command_.count && printed >= *command_.count)) {
    print_line(pending);
  }
  if (command_.count && printed < *command_.count) {
    err_ << "petrelctl: the event stream ended (petrel exited?)\n";
    return kExitUnreachable;
  }
  return kExitOk;
}

int CtlRunner::list() {
  namespace fs = std::filesystem;
  std::vector<fs::path> sockets;
  std::error_code ec;
  fs::directory_iterator it(command_.dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    err_ << fmt::format("petrelctl: cannot read {}: {}\n", command_.dir, ec.message());
    return kExitFailure;
  }
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->path().extension() == ".sock" && it->is_socket(type_ec)) {
      sockets.push_back(it->path());
    }
  }
  std::sort(sockets.begin(), sockets.end());
  std::vector<ListRow> rows;
  json array = json::array();
  for (const auto& path : sockets) {
    HttpClient client(path.string(), std::min(command_.request_timeout, kListTimeout));
    auto response = client.request("GET", "/v1/vm");
    json info = response.ok() && is_success(*response) ? json::parse(response->body, nullptr, false)
                                                       : json();
    if (info.is_object()) {
      rows.push_back(list_row(info, path.stem().string()));
      info["socket"] = path.string();
    } else {
      rows.push_back(ListRow{.name = path.stem().string(), .state = "unreachable"});
      info =
          json{{"socket", path.string()}, {"name", path.stem().string()}, {"state", "unreachable"}};
    }
    array.push_back(std::move(info));
  }
  if (command_.json) {
    out_ << array.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  } else {
    out_ << format_list(rows);
  }
  return kExitOk;
}

}  // namespace petrel::ctl

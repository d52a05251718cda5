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

namespace petrel::ctl {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kDefaultShutdownTimeout{30000};  // petrel's default
constexpr std::chrono::milliseconds kWaitGrace{30000};               // after the guest's timeout
constexpr std::chrono::milliseconds kPollInterval{200};
constexpr std::chrono::milliseconds kListTimeout{2000};                // per socket, at most
constexpr std::chrono::milliseconds kDefaultMigrationTimeout{600000};  // petrel's default

bool is_success(const HttpResponse& response) {
  return response.status >= 200 && response.status < 300;
}

// Prints the body as received, newline-terminated.
void print_raw(std::ostream& out, std::string_view body) {
  out << body;
  if (body.empty() || body.back() != '\n') {
    out << '\n';
  }
}

// The "state" string of a {"state": "..."} answer, or empty.
std::string state_of(const json& body) {
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
std::string absolute_target(std::string_view target, bool is_address) {
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
std::string string_field(const json& body, std::string_view key) {
  if (body.is_object()) {
    auto it = body.find(key);
    if (it != body.end() && it->is_string()) {
      return it->get<std::string>();
    }
  }
  return {};
}

// body[key] when it is a number, else "-".
std::string number_text(const json& body, std::string_view key) {
  if (body.is_object()) {
    auto it = body.find(key);
    if (it != body.end() && it->is_number()) {
      return it->dump();
    }
  }
  return "-";
}

// A migration phase after which nothing changes any more.
bool is_final_phase(std::string_view phase) {
  return phase == "completed" || phase == "failed" || phase == "cancelled" || phase == "idle";
}

}  // namespace

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

int CtlRunner::fail_unexpected(const HttpResponse& response) {
  err_ << fmt::format("petrelctl: unexpected answer (HTTP {}): {}\n", response.status,
                      api_error_message(response.status, response.body));
  return kExitFailure;
}

int CtlRunner::get_and_print(std::string_view target) {
  auto response = client_.request("GET", target);
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
  }
  if (command_.json) {
    print_raw(out_, response->body);
    return kExitOk;
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
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
  }
  if (command_.json) {
    print_raw(out_, response->body);
    return kExitOk;
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
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
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
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
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
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
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

int CtlRunner::snapshot() {
  bool paused_by_us = false;
  if (command_.pause_first) {
    auto paused = client_.request("PUT", "/v1/vm/pause");
    if (!paused.ok()) {
      return fail(paused.error());
    }
    if (is_success(*paused)) {
      paused_by_us = true;
    } else {
      // Already paused is fine (and then it stays paused); anything else is the answer.
      json body = json::parse(paused->body, nullptr, false);
      bool already = paused->status == 409 &&
                     string_field(body.is_object() ? body.value("error", json()) : json(),
                                  "state") == "paused";
      if (!already) {
        return fail(*paused);
      }
    }
  }
  std::string body = json{{"path", absolute_target(command_.target, false)}}.dump();
  auto response = client_.request("PUT", "/v1/vm/snapshot", body);
  int status = kExitOk;
  if (!response.ok()) {
    status = fail(response.error());
  } else if (!is_success(*response)) {
    status = fail(*response);
  } else if (command_.json) {
    print_raw(out_, response->body);
  } else {
    json result = json::parse(response->body, nullptr, false);
    if (!result.is_object()) {
      status = fail_unexpected(*response);
    } else {
      out_ << format_snapshot(result) << '\n';
    }
  }
  if (paused_by_us) {
    auto resumed = client_.request("PUT", "/v1/vm/resume");
    if (!resumed.ok() || !is_success(*resumed)) {
      err_ << "petrelctl: could not resume the VM after the snapshot: "
           << (resumed.ok() ? api_error_message(resumed->status, resumed->body)
                            : resumed.error().to_string())
           << '\n';
      return status == kExitOk ? kExitFailure : status;
    }
  }
  return status;
}

int CtlRunner::restore() {
  std::string body =
      json{{"path", absolute_target(command_.target, false)}, {"paused", command_.restore_paused}}
          .dump();
  auto response = client_.request("PUT", "/v1/vm/restore", body);
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
  }
  if (command_.json) {
    print_raw(out_, response->body);
    return kExitOk;
  }
  std::string state = state_of(json::parse(response->body, nullptr, false));
  out_ << (state.empty() ? "restored" : state) << '\n';
  return kExitOk;
}

int CtlRunner::migrate_start() {
  bool send = command_.verb == Verb::kMigrate;
  json body;
  body[send ? "destination" : "listen"] = absolute_target(command_.target, true);
  if (command_.migrate_timeout) {
    body["timeout_ms"] = command_.migrate_timeout->count();
  }
  if (command_.migrate_downtime) {
    body["downtime_ms"] = command_.migrate_downtime->count();
  }
  if (command_.max_rounds) {
    body["max_rounds"] = *command_.max_rounds;
  }
  auto response =
      client_.request("PUT", send ? "/v1/migration/send" : "/v1/migration/receive", body.dump());
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
  }
  if (command_.wait) {
    return wait_for_migration(command_.migrate_timeout.value_or(kDefaultMigrationTimeout) +
                              kWaitGrace);
  }
  if (command_.json) {
    print_raw(out_, response->body);
  } else {
    out_ << fmt::format("{} {}\n", send ? "migrating to" : "listening on",
                        body[send ? "destination" : "listen"].get<std::string>());
  }
  return kExitOk;
}

int CtlRunner::wait_for_migration(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  std::string last_line;
  while (true) {
    auto response = client_.request("GET", "/v1/migration");
    if (!response.ok()) {
      err_ << "petrelctl: lost the API while waiting for the migration: "
           << response.error().to_string() << '\n';
      return kExitUnreachable;
    }
    if (!is_success(*response)) {
      return fail(*response);
    }
    json status = json::parse(response->body, nullptr, false);
    if (!status.is_object()) {
      return fail_unexpected(*response);
    }
    std::string phase = string_field(status, "phase");
    if (is_final_phase(phase)) {
      if (command_.json) {
        print_raw(out_, response->body);
      }
      if (phase == "completed") {
        if (!command_.json) {
          out_ << fmt::format("migrated in {} ms, downtime {} ms\n",
                              number_text(status, "total_ms"), number_text(status, "downtime_ms"));
        }
        return kExitOk;
      }
      std::string error = string_field(status, "error");
      for (char& c : error) {
        auto u = static_cast<unsigned char>(c);
        c = (u < 0x20 || u == 0x7f) ? '?' : c;  // server text on the user's terminal
      }
      err_ << "petrelctl: migration " << (phase == "idle" ? "did not start" : phase)
           << (error.empty() ? "" : ": " + error) << '\n';
      return kExitFailure;
    }
    if (!command_.json) {
      std::string line = format_migration_progress(status);
      if (line != last_line) {
        out_ << line << '\n';
        out_.flush();
        last_line = std::move(line);
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      err_ << "petrelctl: timed out waiting for the migration to end\n";
      return kExitFailure;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

int CtlRunner::migrate_status() {
  auto response = client_.request("GET", "/v1/migration");
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
  }
  if (command_.json) {
    print_raw(out_, response->body);
    return kExitOk;
  }
  json status = json::parse(response->body, nullptr, false);
  if (!status.is_object()) {
    return fail_unexpected(*response);
  }
  out_ << format_migration(status);
  return kExitOk;
}

int CtlRunner::migrate_cancel() {
  auto response = client_.request("PUT", "/v1/migration/cancel");
  if (!response.ok()) {
    return fail(response.error());
  }
  if (!is_success(*response)) {
    return fail(*response);
  }
  if (command_.json) {
    print_raw(out_, response->body);
    return kExitOk;
  }
  json status = json::parse(response->body, nullptr, false);
  std::string phase = string_field(status, "phase");
  out_ << (phase.empty() ? "cancelled" : phase) << '\n';
  return kExitOk;
}

}  // namespace petrel::ctl

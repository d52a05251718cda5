// CtlRunner: the snapshot, restore and migration verbs (ctl_runner.h).
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/petrelctl/ctl_format.h"
#include "api/petrelctl/ctl_runner.h"
#include "api/petrelctl/ctl_runner_detail.h"

namespace petrel::ctl {

using namespace detail;  // NOLINT: the runner's own helpers

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
  if (auto done = settle(response, command_.json)) {
    return *done;
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
  if (auto done = settle(response, false)) {
    return *done;
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
  if (auto done = settle(response, command_.json)) {
    return *done;
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
  if (auto done = settle(response, command_.json)) {
    return *done;
  }
  json status = json::parse(response->body, nullptr, false);
  std::string phase = string_field(status, "phase");
  out_ << (phase.empty() ? "cancelled" : phase) << '\n';
  return kExitOk;
}

}  // namespace petrel::ctl

// CtlRunner: carries out one parsed petrelctl command against the API and maps the outcome to
// petrelctl's exit status (docs/petrelctl.md; scripts rely on these values).
#pragma once

#include <chrono>
#include <optional>
#include <ostream>

#include "api/petrelctl/ctl_args.h"
#include "api/petrelctl/http_client.h"

namespace petrel::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the API answered an error (not 409), or unexpected
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;  // no socket, nobody listening, timeout
inline constexpr int kExitState = 4;        // refused in the current state (HTTP 409)

class CtlRunner {
 public:
  // Results go to `out`, messages ("petrelctl: ...") to `err`; both must outlive the runner.
  CtlRunner(const CtlCommand& command, std::ostream& out, std::ostream& err);

  // Runs the command once and returns the exit status. Blocks (events: until the stream
  // ends or --count events were printed). Never throws.
  int run();

 private:
  int get_and_print(std::string_view target);
  int action(std::string_view name);
  int shutdown();
  int wait_for_shut_off();
  int metrics();
  int events();
  int list();
  int snapshot();
  int restore();
  int migrate_start();
  int migrate_status();
  int migrate_cancel();
  // Polls GET /v1/migration until the migration ends or `limit` passes.
  int wait_for_migration(std::chrono::milliseconds limit);
  // balloon, balloon set, setmem, balloon stats (ctl_runner_balloon.cc).
  int balloon_info();
  int balloon_set();
  int balloon_stats();
  // Prints a balloon answer (readable or --json) and returns the exit status.
  int balloon_answer(const Result<HttpResponse>& response);

  // The exit status for a failed exchange / an error answer, after printing its message.
  int fail(const Error& error);
  int fail(const HttpResponse& response);
  int fail_unexpected(const HttpResponse& response);
  // How every verb's answer starts: a failed exchange or a non-2xx status fails (its exit
  // status is returned), and with `raw` the body is printed as it came (kExitOk). nullopt: a
  // success for the verb to print its own way.
  std::optional<int> settle(const Result<HttpResponse>& response, bool raw);

  const CtlCommand& command_;
  std::ostream& out_;
  std::ostream& err_;
  HttpClient client_;
};

}  // namespace petrel::ctl

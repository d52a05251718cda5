// BackgroundProcess: a process that keeps running while the test acts on it (petrel serving a
// guest that the test pings or drives through the API): stdout and stderr go to files the
// test polls. The destructor kills and reaps it if it is still running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace petrel::test {

// What a service manager would add to a child (tests that play systemd).
struct SpawnExtras {
  std::vector<std::string> env;  // NAME=VALUE, added to (or replacing in) the test's environment
  int fd3 = -1;                  // when >= 0: becomes the child's fd 3
  bool listen_pid = false;       // set LISTEN_PID to the child's own pid (through sh's exec)
};

class BackgroundProcess {
 public:
  // Spawns argv (argv[0] looked up in PATH); stdin is /dev/null. REQUIREs success.
  BackgroundProcess(const std::vector<std::string>& argv, std::string out_path,
                    std::string err_path, const SpawnExtras& extras = {});
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  // Waits until stdout holds `text` and the end of its line. False when the process ended
  // first or `timeout` passed.
  bool wait_for_line(const std::string& text, std::chrono::seconds timeout);
  // Waits until stderr (petrel's log) holds `text`. False on exit or timeout.
  bool wait_for_log(const std::string& text, std::chrono::seconds timeout);

  // Waits for the process to end by itself; its exit status (-1 when a signal ended it), or
  // nullopt after `timeout` (the process keeps running).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  bool running();

  // SIGTERM, a second SIGTERM after 300 ms (petrel: stop now instead of a graceful
  // shutdown), then SIGKILL after 30 s; reaps the process.
  void stop();

  pid_t pid() const { return pid_; }
  std::string out() const;
  std::string err() const;

 private:
  bool wait_for(const std::string& path, const std::string& text, bool whole_line,
                std::chrono::seconds timeout);
  // Reaps the process if it has ended; true if it has (exit_status_ set).
  bool reap();

  std::string out_path_;
  std::string err_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

// The whole file as a string ("" if it cannot be read).
std::string read_text_file(const std::string& path);

}  // namespace petrel::test

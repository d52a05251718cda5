#include "background_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace petrel::test {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv, std::string out_path,
                                     std::string err_path, const SpawnExtras& extras)
    : out_path_(std::move(out_path)), err_path_(std::move(err_path)) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (extras.fd3 >= 0) {
    posix_spawn_file_actions_adddup2(&actions, extras.fd3, 3);
  }
  std::vector<std::string> storage = argv;
  if (extras.listen_pid) {
    // sh's $$ is its pid, which exec hands on to the program.
    storage.insert(storage.begin(), {"sh", "-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""});
  }
  std::vector<char*> args;
  for (auto& a : storage) {
    args.push_back(a.data());
  }
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const bool replaced = std::any_of(extras.env.begin(), extras.env.end(), [&](const auto& x) {
      return entry.substr(0, entry.find('=') + 1) == x.substr(0, x.find('=') + 1);
    });
    if (!replaced) {
      env_storage.push_back(entry);
    }
  }
  env_storage.insert(env_storage.end(), extras.env.begin(), extras.env.end());
  std::vector<char*> envp;
  for (auto& e : env_storage) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  const int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  INFO("posix_spawnp " << argv[0]);
  REQUIRE(rc == 0);
}

BackgroundProcess::~BackgroundProcess() {
  if (pid_ > 0 && !exit_status_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool BackgroundProcess::reap() {
  if (exit_status_) {
    return true;
  }
  int status = 0;
  if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return true;
  }
  return false;
}

bool BackgroundProcess::running() {
  return !reap();
}

bool BackgroundProcess::wait_for(const std::string& path, const std::string& text, bool whole_line,
                                 std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string content = read_text_file(path);
    const size_t at = content.find(text);
    if (at != std::string::npos && (!whole_line || content.find('\n', at) != std::string::npos)) {
      return true;
    }
    if (reap()) {
      const std::string last = read_text_file(path);
      return last.find(text) != std::string::npos;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

bool BackgroundProcess::wait_for_line(const std::string& text, std::chrono::seconds timeout) {
  return wait_for(out_path_, text, true, timeout);
}

bool BackgroundProcess::wait_for_log(const std::string& text, std::chrono::seconds timeout) {
  return wait_for(err_path_, text, false, timeout);
}

std::optional<int> BackgroundProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reap()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_status_;
}

void BackgroundProcess::stop() {
  if (pid_ <= 0 || reap()) {
    return;
  }
  // petrel: the first SIGTERM asks the guest to shut down, the second stops it at once.
  ::kill(pid_, SIGTERM);
  if (wait_exit(std::chrono::milliseconds(300))) {
    return;
  }
  ::kill(pid_, SIGTERM);
  if (!wait_exit(std::chrono::seconds(30))) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    exit_status_ = -1;
  }
}

std::string BackgroundProcess::out() const {
  return read_text_file(out_path_);
}

std::string BackgroundProcess::err() const {
  return read_text_file(err_path_);
}

}  // namespace petrel::test

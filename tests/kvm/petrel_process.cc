#include "petrel_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

extern char** environ;

namespace petrel::test {

ProcessResult run_process(const std::string& program, const std::vector<std::string>& args,
                          const RunOptions& options) {
  std::array<int, 2> out_pipe{};
  std::array<int, 2> err_pipe{};
  std::array<int, 2> in_pipe{-1, -1};
  if (::pipe2(out_pipe.data(), O_CLOEXEC) < 0 || ::pipe2(err_pipe.data(), O_CLOEXEC) < 0 ||
      (!options.input.empty() && ::pipe2(in_pipe.data(), O_CLOEXEC) < 0)) {
    throw std::runtime_error("pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (options.input.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  } else {
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
  }
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);

  std::vector<std::string> argv_storage{program};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);

  pid_t pid = 0;
  int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (in_pipe[0] >= 0) {
    ::close(in_pipe[0]);
  }
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    throw std::runtime_error("posix_spawn " + program + " failed");
  }

  ProcessResult result;
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  bool signalled = false;
  bool signalled_again = false;
  auto signalled_at = std::chrono::steady_clock::now();
  auto feed_input = [&] {
    if (in_pipe[1] >= 0 && result.out.find(options.input_after) != std::string::npos) {
      // Small enough for the pipe buffer: one blocking write.
      [[maybe_unused]] ssize_t n = ::write(in_pipe[1], options.input.data(), options.input.size());
      ::close(in_pipe[1]);
      in_pipe[1] = -1;
    }
    if (options.signal != 0 && !signalled &&
        result.out.find(options.signal_after) != std::string::npos) {
      ::kill(pid, options.signal);
      signalled = true;
      signalled_at = std::chrono::steady_clock::now();
    }
    if (signalled && !signalled_again && options.signal_again_after.count() > 0 &&
        std::chrono::steady_clock::now() - signalled_at >= options.signal_again_after) {
      ::kill(pid, options.signal);
      signalled_again = true;
    }
  };
  feed_input();
  std::array<pollfd, 2> fds{pollfd{out_pipe[0], POLLIN, 0}, pollfd{err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  std::array<char, 4096> buf{};
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    // While a second signal may be due, wake up in time to send it.
    const bool may_signal_again =
        signalled && !signalled_again && options.signal_again_after.count() > 0;
    const int wait_ms =
        static_cast<int>(may_signal_again ? std::min<int64_t>(left.count(), 20) : left.count());
    int n = ::poll(fds.data(), fds.size(), wait_ms);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) {
        continue;
      }
      ssize_t got = ::read(fds[i].fd, buf.data(), buf.size());
      if (got <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      (i == 0 ? result.out : result.err).append(buf.data(), static_cast<size_t>(got));
    }
    feed_input();
  }
  if (in_pipe[1] >= 0) {
    ::close(in_pipe[1]);
  }
  for (auto& f : fds) {
    if (f.fd >= 0) {
      ::close(f.fd);
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
  }
  return result;
}

std::string petrel_binary() {
  const char* bin = std::getenv("PETREL_BIN");
  if (bin == nullptr) {
    throw std::runtime_error("PETREL_BIN is not set (run the tests through meson test)");
  }
  return bin;
}

std::string guest_image(const std::string& name) {
  const char* dir = std::getenv("PETREL_GUEST_DIR");
  if (dir == nullptr) {
    throw std::runtime_error("PETREL_GUEST_DIR is not set (run the tests through meson test)");
  }
  return std::string(dir) + "/" + name + ".elf";
}

bool host_is_pvm() {
  struct stat st {};
  return ::stat("/sys/module/kvm_pvm", &st) == 0;
}

}  // namespace petrel::test

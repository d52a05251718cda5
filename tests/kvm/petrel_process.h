// Running the real `petrel` binary as a child process for end-to-end tests: arguments in,
// exit status and captured stdout/stderr out, with a time limit after which it is killed.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace petrel::test {

struct ProcessResult {
  int exit_code = -1;   // the child's exit status; -1 when it was killed by a signal
  int term_signal = 0;  // the signal that ended it, if any
  bool timed_out = false;
  std::string out;  // stdout: the guest console
  std::string err;  // stderr: petrel's log
};

struct RunOptions {
  std::chrono::milliseconds timeout = std::chrono::seconds(60);  // then SIGKILL
  // Written to the child's stdin once its stdout contains `input_after` (at once when that is
  // empty); stdin is then closed. Without input, stdin is /dev/null.
  std::string input;
  std::string input_after;
  // When set: once stdout contains `signal_after`, the child gets `signal`, and again after
  // `signal_again_after` if it still runs (0: only once). petrel takes a first SIGINT/SIGTERM
  // as "shut the guest down gracefully" and a second as "stop it now".
  std::string signal_after;
  int signal = 0;
  std::chrono::milliseconds signal_again_after{300};
};

ProcessResult run_process(const std::string& program, const std::vector<std::string>& args,
                          const RunOptions& options = {});

// Paths handed to the test by meson through the environment.
std::string petrel_binary();                       // PETREL_BIN
std::string guest_image(const std::string& name);  // PETREL_GUEST_DIR/<name>.elf

// True on a PVM-flavoured host KVM (the kvm_pvm module is loaded).
bool host_is_pvm();

}  // namespace petrel::test

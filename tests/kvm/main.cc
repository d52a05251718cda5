// KVM test runner: Catch2 with one extra, leading option, `--require=WHAT`, checked before
// any test runs. When the host cannot run the selected tests the runner prints why and exits
// 77, which meson reports as SKIP under the test's own name (never as a pass).
//   --require=kvm   /dev/kvm must be readable and writable
//   --require=pvm   the host KVM must be PVM-flavoured (kvm_pvm)
//   --require=hw    the host KVM must be ordinary hardware KVM (VT-x / AMD-V), not PVM
#define CATCH_CONFIG_RUNNER
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "petrel_process.h"

namespace {

constexpr int kSkip = 77;

int skip(const char* why) {
  std::printf("SKIP: %s\n", why);
  return kSkip;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest{argv[0]};
  std::vector<std::string> filters;
  filters.reserve(static_cast<size_t>(argc));
  std::string warn_flag = "--warn";
  std::string no_tests = "NoTests";
  bool need_kvm = true;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (arg == "--require=pvm" && !petrel::test::host_is_pvm()) {
      return skip("needs a PVM-flavoured host KVM (kvm_pvm); this host runs ordinary KVM");
    }
    if (arg == "--require=hw" && petrel::test::host_is_pvm()) {
      return skip(
          "needs ordinary hardware KVM (VT-x/AMD-V): this host's KVM is PVM, on which a guest's "
          "user space cannot run (returning to user mode needs PVM's own paravirtual protocol)");
    }
    if (arg.starts_with("--require=")) {
      continue;
    }
    if (!arg.starts_with("-")) {
      // A test name from meson: Catch2 reads ',' as "or" in a filter, so escape it.
      std::string escaped;
      for (char c : arg) {
        escaped += c == ',' ? std::string("\\,") : std::string(1, c);
      }
      filters.push_back(std::move(escaped));
      continue;
    }
    rest.push_back(argv[i]);
  }
  for (auto& filter : filters) {
    rest.push_back(filter.data());
  }
  // A filter that matches no test case is a failure, not an empty pass.
  rest.push_back(warn_flag.data());
  rest.push_back(no_tests.data());
  if (need_kvm && ::access("/dev/kvm", R_OK | W_OK) != 0) {
    return skip("/dev/kvm is not readable and writable here");
  }
  return Catch::Session().run(static_cast<int>(rest.size()), rest.data());
}

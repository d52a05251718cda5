// petrelctl: the command-line client of petrel's control API (docs/petrelctl.md).
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "api/petrelctl/ctl_args.h"
#include "api/petrelctl/ctl_runner.h"

int main(int argc, char** argv) {
  using namespace petrel::ctl;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << help_text(Verb::kHelp);
    return kExitUsage;
  }
  const char* env_dir = std::getenv("PETREL_DIR");
  auto command = parse_args(args, env_dir == nullptr ? "" : env_dir);
  if (!command.ok()) {
    std::cerr << "petrelctl: " << command.error().message() << "\n"
              << "Try 'petrelctl help'.\n";
    return kExitUsage;
  }
  if (command->show_help) {
    std::cout << help_text(command->verb);
    return kExitOk;
  }
  return CtlRunner(*command, std::cout, std::cerr).run();
}

// petrelctl's argument parsing (src/api/petrelctl/ctl_args.h).
#include <catch2/catch.hpp>

#include "api/petrelctl/ctl_args.h"

using namespace petrel::ctl;
using Args = std::vector<std::string>;

TEST_CASE("petrelctl: a verb with a socket path or a bare name", "[petrelctl]") {
  auto cmd = parse_args({"-s", "/tmp/x/vm.sock", "pause"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kPause);
  CHECK(cmd->socket == "/tmp/x/vm.sock");
  CHECK_FALSE(cmd->show_help);
  CHECK(cmd->request_timeout == kDefaultRequestTimeout);

  cmd = parse_args({"info", "--socket", "vm1"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->socket == "/run/petrel/vm1.sock");

  cmd = parse_args({"info", "-s", "vm1"}, "/var/lib/p/");
  REQUIRE(cmd.ok());
  CHECK(cmd->socket == "/var/lib/p/vm1.sock");

  cmd = parse_args({"--dir", "/d", "-s", "vm1", "state", "--json"}, "/env");
  REQUIRE(cmd.ok());
  CHECK(cmd->socket == "/d/vm1.sock");
  CHECK(cmd->json);

  cmd = parse_args({"-s", "./vm.sock", "state"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->socket == "./vm.sock");
}

TEST_CASE("petrelctl: verb options and the two --timeout", "[petrelctl]") {
  auto cmd =
      parse_args({"--timeout", "2.5", "-s", "a", "shutdown", "--timeout", "5", "--wait"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kShutdown);
  CHECK(cmd->request_timeout == std::chrono::milliseconds(2500));
  REQUIRE(cmd->shutdown_timeout);
  CHECK(*cmd->shutdown_timeout == std::chrono::milliseconds(5000));
  CHECK(cmd->wait);

  cmd = parse_args({"-s", "a", "info", "--timeout", "3"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->request_timeout == std::chrono::milliseconds(3000));

  cmd = parse_args({"-s", "a", "events", "--after", "0", "--count", "3"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->after == 0u);
  CHECK(cmd->count == 3u);

  cmd = parse_args({"-s", "a", "metrics", "--prometheus"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->prometheus);

  cmd = parse_args({"list"}, "/srv/petrel");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kList);
  CHECK(cmd->dir == "/srv/petrel");
  CHECK(cmd->socket.empty());
}

TEST_CASE("petrelctl: help forms", "[petrelctl]") {
  for (const Args& args : {Args{"help"}, Args{"-h"}, Args{"--help"}}) {
    auto cmd = parse_args(args, "");
    REQUIRE(cmd.ok());
    CHECK(cmd->show_help);
    CHECK(cmd->verb == Verb::kHelp);
  }
  auto cmd = parse_args({"help", "shutdown"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->show_help);
  CHECK(cmd->verb == Verb::kShutdown);
  cmd = parse_args({"events", "--help"}, "");  // no socket needed for help
  REQUIRE(cmd.ok());
  CHECK(cmd->show_help);
  CHECK(cmd->verb == Verb::kEvents);
  CHECK(help_text(Verb::kShutdown).find("--wait") != std::string::npos);
  CHECK(help_text(Verb::kHelp).find("Exit status") != std::string::npos);
  for (auto verb : {"info", "state", "config", "pause", "resume", "shutdown", "reboot", "stop",
                    "start", "metrics", "events", "list"}) {
    CAPTURE(verb);
    REQUIRE(verb_from_string(verb));
    CHECK(to_string(*verb_from_string(verb)) == verb);
    CHECK(help_text(Verb::kHelp).find(verb) != std::string::npos);
  }
}

TEST_CASE("petrelctl: usage errors", "[petrelctl]") {
  const std::vector<Args> bad{
      {"frobnicate"},
      {"-s", "a", "pause", "extra"},
      {"pause"},  // no socket
      {"-s"},
      {"-s", "", "info"},
      {"--bogus", "info"},
      {"-s", "a", "info", "--wait"},  // a shutdown option on another verb
      {"-s", "a", "shutdown", "--timeout", "0"},
      {"-s", "a", "shutdown", "--timeout", "-1"},
      {"-s", "a", "shutdown", "--timeout", "3601"},
      {"-s", "a", "shutdown", "--timeout", "nan"},
      {"-s", "a", "shutdown", "--timeout", "5s"},
      {"-s", "a", "shutdown", "--timeout"},
      {"--timeout", "", "-s", "a", "info"},
      {"-s", "a", "events", "--count", "0"},
      {"-s", "a", "events", "--after", "-1"},
      {"-s", "a", "events", "--after", "99999999999999999999999"},
      {"-s", "a", "list"},
      {"help", "nope"},
      {"--dir", "", "list"},
  };
  for (const auto& args : bad) {
    CAPTURE(args);
    auto cmd = parse_args(args, "");
    REQUIRE_FALSE(cmd.ok());
    CHECK(cmd.error().code() == petrel::ErrorCode::kInvalidArgument);
    CHECK_FALSE(cmd.error().message().empty());
  }
}

TEST_CASE("petrelctl: resolve_socket", "[petrelctl]") {
  CHECK(resolve_socket("vm", "/run/petrel") == "/run/petrel/vm.sock");
  CHECK(resolve_socket("vm", "/run/petrel/") == "/run/petrel/vm.sock");
  CHECK(resolve_socket("a/b.sock", "/x") == "a/b.sock");
}

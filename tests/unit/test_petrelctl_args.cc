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

TEST_CASE("petrelctl: snapshot, restore and migration verbs", "[petrelctl]") {
  auto cmd = parse_args({"-s", "a", "snapshot", "/srv/s1", "--pause"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kSnapshot);
  CHECK(cmd->target == "/srv/s1");
  CHECK(cmd->pause_first);

  cmd = parse_args({"-s", "a", "restore", "--paused", "snap"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kRestore);
  CHECK(cmd->target == "snap");
  CHECK(cmd->restore_paused);

  cmd = parse_args({"--timeout", "2", "-s", "a", "migrate", "tcp:h:1", "--downtime", "50",
                    "--timeout", "60", "--max-rounds", "1000", "--wait"},
                   "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kMigrate);
  CHECK(cmd->target == "tcp:h:1");
  CHECK(cmd->request_timeout == std::chrono::milliseconds(2000));
  CHECK(cmd->migrate_timeout == std::chrono::milliseconds(60000));
  CHECK(cmd->migrate_downtime == std::chrono::milliseconds(50));
  CHECK(cmd->max_rounds == 1000u);
  CHECK(cmd->wait);

  cmd = parse_args({"-s", "a", "migrate", "unix:/m.sock"}, "");
  REQUIRE(cmd.ok());
  CHECK(!cmd->migrate_timeout);
  CHECK(!cmd->migrate_downtime);
  CHECK(!cmd->max_rounds);
  CHECK(!cmd->wait);

  cmd = parse_args({"-s", "a", "migrate-receive", "tcp:0.0.0.0:4444", "--timeout", "86400"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kMigrateReceive);
  CHECK(cmd->migrate_timeout == std::chrono::milliseconds(86400000));

  CHECK(parse_args({"-s", "a", "migrate-status", "--json"}, "")->verb == Verb::kMigrateStatus);
  CHECK(parse_args({"-s", "a", "migrate-cancel"}, "")->verb == Verb::kMigrateCancel);
  CHECK(parse_args({"help", "migrate"}, "")->show_help);
  CHECK(help_text(Verb::kMigrate).find("--max-rounds") != std::string::npos);

  for (const Args& bad : std::vector<Args>{
           {"-s", "a", "snapshot"},
           {"-s", "a", "snapshot", ""},
           {"-s", "a", "snapshot", "/a", "/b"},
           {"-s", "a", "restore"},
           {"-s", "a", "migrate"},
           {"-s", "a", "migrate-receive"},
           {"-s", "a", "migrate-status", "x"},
           {"-s", "a", "migrate", "tcp:h:1", "--downtime", "0"},
           {"-s", "a", "migrate", "tcp:h:1", "--downtime", "60001"},
           {"-s", "a", "migrate", "tcp:h:1", "--max-rounds", "0"},
           {"-s", "a", "migrate", "tcp:h:1", "--max-rounds", "1001"},
           {"-s", "a", "migrate", "tcp:h:1", "--timeout", "0.5"},
           {"-s", "a", "migrate", "tcp:h:1", "--timeout", "86401"},
           {"-s", "a", "migrate-receive", "tcp:h:1", "--downtime", "5"},
           {"-s", "a", "snapshot", "/a", "--paused"},
           {"-s", "a", "restore", "/a", "--pause"},
           {"snapshot", "/a"},
       }) {
    INFO(bad.size());
    auto r = parse_args(bad, "");
    CHECK_FALSE(r.ok());
  }
}

TEST_CASE("petrelctl: balloon, balloon set, balloon stats and setmem", "[petrelctl][balloon]") {
  auto cmd = parse_args({"-s", "vm1", "balloon"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kBalloon);

  cmd = parse_args({"-s", "vm1", "balloon", "stats", "--json"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kBalloonStats);
  CHECK(cmd->json);

  cmd = parse_args({"-s", "vm1", "balloon", "set", "128M"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kBalloonSet);
  CHECK(cmd->size_bytes == 128ull << 20);

  cmd = parse_args({"balloon", "set", "0", "-s", "vm1"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->size_bytes == 0);

  cmd = parse_args({"-s", "vm1", "setmem", "1G"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kSetmem);
  CHECK(cmd->size_bytes == 1ull << 30);

  cmd = parse_args({"-s", "vm1", "balloon", "set", "--help"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->show_help);
  CHECK(cmd->verb == Verb::kBalloonSet);
  CHECK(help_text(Verb::kBalloonSet).find("Usage: petrelctl -s SOCKET balloon set SIZE") == 0);
  cmd = parse_args({"help", "setmem"}, "");
  REQUIRE(cmd.ok());
  CHECK(cmd->verb == Verb::kSetmem);
  CHECK(help_text(Verb::kHelp).find("balloon stats") != std::string::npos);
}

TEST_CASE("petrelctl: balloon usage errors", "[petrelctl][balloon]") {
  auto message = [](const Args& args) {
    auto cmd = parse_args(args, "");
    REQUIRE_FALSE(cmd.ok());
    CHECK(cmd.error().code() == petrel::ErrorCode::kInvalidArgument);
    return cmd.error().message();
  };
  CHECK(message({"-s", "a", "balloon", "set"}) == "balloon set needs a size, e.g. 128M or 1G");
  CHECK(message({"-s", "a", "setmem"}) == "setmem needs a size, e.g. 128M or 1G");
  CHECK(message({"-s", "a", "balloon", "inflate"}) ==
        "balloon takes 'set SIZE' or 'stats', not 'inflate'");
  CHECK(message({"-s", "a", "balloon", "set", "lots"}) ==
        "a size is digits with an optional K, M, G or T suffix (e.g. 128M, 1G), not 'lots'");
  CHECK(message({"-s", "a", "balloon", "set", "1M", "2M"}) == "unexpected argument '2M'");
  CHECK(message({"-s", "a", "balloon", "stats", "now"}) == "unexpected argument 'now'");
  CHECK(message({"balloon"}) == "balloon needs the VM's socket: -s PATH or -s NAME");
}

TEST_CASE("petrelctl: sizes", "[petrelctl][balloon]") {
  CHECK(*parse_size_arg("4096") == 4096);
  CHECK(*parse_size_arg("128M") == 128ull << 20);
  CHECK(*parse_size_arg("128mib") == 128ull << 20);
  CHECK(*parse_size_arg("2G") == 2ull << 30);
  CHECK(*parse_size_arg("1t") == 1ull << 40);
  CHECK(*parse_size_arg("8K") == 8192);
  CHECK(*parse_size_arg("7B") == 7);
  CHECK(*parse_size_arg("18446744073709551615") == UINT64_MAX);
  for (const char* bad :
       {"", "M", "-1M", "1.5G", "1 G", "1X", "16777216T", "18446744073709551616"}) {
    INFO(bad);
    CHECK_FALSE(parse_size_arg(bad).ok());
  }
}

#include <catch2/catch.hpp>
#include <initializer_list>
#include <string>
#include <vector>

#include "scratch_dir.h"
#include "vmm/cli.h"

using petrel::CliCommand;
using petrel::CliCommandKind;
using petrel::ErrorCode;
using petrel::LogFormat;
using petrel::PvmMode;
using petrel::Result;
using petrel::SerialMode;
using petrel::testing::ScratchDir;

namespace {

Result<CliCommand> parse(const std::vector<std::string>& args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  return petrel::parse_command_line(views);
}

// The message of the error parse_command_line must return for `args`.
std::string cli_error(const std::vector<std::string>& args) {
  auto parsed = parse(args);
  REQUIRE_FALSE(parsed.ok());
  return parsed.error().to_string();
}

CliCommandKind kind_of(const std::vector<std::string>& args) {
  auto parsed = parse(args);
  REQUIRE(parsed.ok());
  return parsed->kind;
}

}  // namespace

TEST_CASE("the command line selects help, version or run", "[cli]") {
  CHECK(kind_of({"help"}) == CliCommandKind::kHelp);
  CHECK(kind_of({"--help"}) == CliCommandKind::kHelp);
  CHECK(kind_of({"-h"}) == CliCommandKind::kHelp);
  CHECK(kind_of({"help", "run"}) == CliCommandKind::kHelp);
  CHECK(kind_of({"run", "--help"}) == CliCommandKind::kHelp);
  CHECK(kind_of({"run", "--vcpus", "x", "-h"}) == CliCommandKind::kHelp);
  CHECK(kind_of({"version"}) == CliCommandKind::kVersion);
  CHECK(kind_of({"--version"}) == CliCommandKind::kVersion);

  CHECK(
      cli_error({}) ==
      "missing command: expected run, serve, restore, receive, help or version; see petrel --help");
  CHECK(cli_error({"boot"}) ==
        "unknown command \"boot\": expected run, serve, restore, receive, help or version");
  CHECK(cli_error({"--kernel=vmlinux"}) ==
        "unknown command \"--kernel=vmlinux\": expected run, serve, restore, receive, help or "
        "version; flags go after the "
        "command, e.g. petrel run --kernel=vmlinux");
  CHECK(cli_error({"version", "x"}) == "version: unexpected argument \"x\"");
  CHECK(cli_error({"help", "me"}) == "help: unexpected argument \"me\"");
  CHECK(cli_error({"run", "--help=yes"}) == "--help: takes no value");
}

TEST_CASE("petrel run reads every flag in both forms", "[cli]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();
  std::string initrd = dir.write("initramfs.cpio.gz", "ramdisk").string();
  std::string console = (dir.path() / "console.log").string();

  auto spaced = parse({"run",
                       "--kernel",
                       kernel,
                       "--initrd",
                       initrd,
                       "--cmdline",
                       "console=ttyS0 quiet",
                       "--memory",
                       "1G",
                       "--vcpus",
                       "4",
                       "--serial",
                       "file:" + console,
                       "--log-level",
                       "debug",
                       "--log-format",
                       "json",
                       "--name",
                       "vm-1",
                       "--pvm-mode",
                       "emulated"});
  REQUIRE(spaced.ok());
  CHECK(spaced->kind == CliCommandKind::kRun);
  const petrel::VmConfig& config = spaced->config;
  CHECK(config.kernel == kernel);
  CHECK(config.initrd == initrd);
  CHECK(config.cmdline == "console=ttyS0 quiet");
  CHECK(config.memory_bytes == 1ull << 30);
  CHECK(config.vcpus == 4);
  CHECK(config.serial.mode == SerialMode::kFile);
  CHECK(config.serial.path == console);
  CHECK(config.log_level == "debug");
  CHECK(config.log_format == LogFormat::kJson);
  CHECK(config.name == "vm-1");
  CHECK(config.pvm_mode == PvmMode::kEmulated);

  auto with_equals =
      parse({"run", "--kernel=" + kernel, "--initrd=" + initrd, "--cmdline=console=ttyS0 quiet",
             "--memory=1G", "--vcpus=4", "--serial=file:" + console, "--log-level=debug",
             "--log-format=json", "--name=vm-1", "--pvm-mode=emulated"});
  REQUIRE(with_equals.ok());
  CHECK(with_equals->config == config);

  auto defaults = parse({"run", "--kernel", kernel});
  REQUIRE(defaults.ok());
  petrel::VmConfig expected;
  expected.kernel = kernel;
  CHECK(defaults->config == expected);
  CHECK(defaults->config.initrd.empty());

  CHECK(parse({"run", "--kernel", kernel, "--serial", "none"})->config.serial.mode ==
        SerialMode::kNone);
  std::string socket = (dir.path() / "console.sock").string();
  auto with_socket = parse({"run", "--kernel", kernel, "--serial", "socket:" + socket});
  REQUIRE(with_socket.ok());
  CHECK(with_socket->config.serial == petrel::SerialConfig{SerialMode::kSocket, socket});
  CHECK(parse({"run", "--kernel", kernel, "--serial=socket:" + socket})->config.serial ==
        with_socket->config.serial);
  CHECK(parse({"run", "--kernel", kernel, "--cmdline="})->config.cmdline.empty());
}

TEST_CASE("petrel run refuses bad values naming the flag", "[cli]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();
  auto run_with = [&](std::string flag, std::string value) {
    return cli_error({"run", "--kernel", kernel, flag, value});
  };

  CHECK(run_with("--vcpus", "x") == "--vcpus: expected an integer from 1 to 254, got \"x\"");
  CHECK(run_with("--vcpus", "0") == "--vcpus: expected an integer from 1 to 254, got \"0\"");
  CHECK(run_with("--vcpus", "255") == "--vcpus: expected an integer from 1 to 254, got \"255\"");
  CHECK(run_with("--vcpus", "99999999999") ==
        "--vcpus: expected an integer from 1 to 254, got \"99999999999\"");
  CHECK(run_with("--vcpus", "") == "--vcpus: expected an integer from 1 to 254, got \"\"");
  CHECK(run_with("--memory", "8M") == "--memory: 8M is below the minimum 16M");
  CHECK(run_with("--memory", "12Q") ==
        "--memory: invalid size \"12Q\": expected digits with an optional K, M, G or T suffix, "
        "e.g. 256M");
  CHECK(run_with("--memory", "99999999999999999999G") ==
        "--memory: invalid size \"99999999999999999999G\": larger than 2^64 - 1 bytes");
  CHECK(run_with("--serial", "tty") ==
        "--serial: expected stdio, none, file:PATH or socket:PATH, got \"tty\"");
  CHECK(run_with("--serial", "file:" + dir.path().string() + "/no/console.log") ==
        "--serial: " + dir.path().string() + "/no: No such file or directory");
  std::string regular = dir.write("console.log", "x").string();
  CHECK(run_with("--serial", "socket:" + regular) ==
        "--serial: " + regular + ": exists and is not a socket");
  CHECK(run_with("--serial", "socket:" + dir.path().string() + "/no/console.sock") ==
        "--serial: " + dir.path().string() + "/no: No such file or directory");
  CHECK(run_with("--serial", "socket:") ==
        "--serial: socket: needs a path, e.g. socket:/tmp/console.sock");
  CHECK(run_with("--serial", "socket:/" + std::string(107, 's')) ==
        "--serial: the socket path is 108 bytes; a Unix socket address holds at most 107");
  CHECK(run_with("--log-level", "loud") ==
        "--log-level: expected one of trace, debug, info, warn, error, off, got \"loud\"");
  CHECK(run_with("--log-format", "xml") ==
        "--log-format: expected one of text, json, journal, got \"xml\"");
  CHECK(run_with("--pvm-mode", "fast") ==
        "--pvm-mode: expected one of auto, emulated, got \"fast\"");
  CHECK(run_with("--name", "a/b") ==
        "--name: expected 1 to 64 characters from A-Z a-z 0-9 . _ -, got \"a/b\"");
  CHECK(run_with("--cmdline", std::string(4096, 'x')) ==
        "--cmdline: 4096 bytes is longer than the maximum 4095");

  std::string missing = (dir.path() / "missing").string();
  auto not_found = parse({"run", "--kernel", missing});
  REQUIRE_FALSE(not_found.ok());
  CHECK(not_found.error().code() == ErrorCode::kNotFound);
  CHECK(not_found.error().to_string() == "--kernel: " + missing + ": No such file or directory");
  CHECK(cli_error({"run", "--kernel="}) == "--kernel: must not be empty");
}

TEST_CASE("petrel run refuses a bad --initrd", "[cli]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();

  std::string missing = (dir.path() / "initrd.img").string();
  auto not_found = parse({"run", "--kernel", kernel, "--initrd", missing});
  REQUIRE_FALSE(not_found.ok());
  CHECK(not_found.error().code() == ErrorCode::kNotFound);
  CHECK(not_found.error().to_string() == "--initrd: " + missing + ": No such file or directory");

  auto directory = parse({"run", "--kernel", kernel, "--initrd", dir.path().string()});
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().code() == ErrorCode::kInvalidArgument);
  CHECK(directory.error().to_string() ==
        "--initrd: " + dir.path().string() + ": not a regular file");

  CHECK(cli_error({"run", "--kernel", kernel, "--initrd="}) == "--initrd: must not be empty");
  CHECK(cli_error({"run", "--kernel", kernel, "--initrd"}) ==
        "--initrd: missing value (PATH), e.g. --initrd ./initramfs.cpio.gz");
  std::string initrd = dir.write("initrd.cpio", "ramdisk").string();
  CHECK(cli_error({"run", "--kernel", kernel, "--initrd", initrd, "--initrd", initrd}) ==
        "--initrd: given more than once");
  CHECK(cli_error({"run", "--initrd", initrd}) ==
        "run: --kernel is required (or \"kernel\" in the --config file)");
  CHECK(cli_error({"run", "--kernel", kernel, "--initramfs", initrd}) ==
        "run: unknown flag \"--initramfs\"; see petrel run --help");
}

TEST_CASE("petrel run refuses malformed flag lists", "[cli]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();

  CHECK(cli_error({"run"}) == "run: --kernel is required (or \"kernel\" in the --config file)");
  CHECK(cli_error({"run", "--kernel"}) ==
        "--kernel: missing value (PATH), e.g. --kernel ./vmlinux");
  CHECK(cli_error({"run", "--kernel", "--vcpus", "2"}) ==
        "--kernel: missing value (PATH), e.g. --kernel ./vmlinux");
  CHECK(cli_error({"run", "--kernel", kernel, "--vcpus", "1", "--vcpus=2"}) ==
        "--vcpus: given more than once");
  CHECK(cli_error({"run", "--vcpu", "2"}) ==
        "run: unknown flag \"--vcpu\" (did you mean \"--vcpus\"?); see petrel run --help");
  CHECK(cli_error({"run", "--disks=x.img"}) ==
        "run: unknown flag \"--disks\" (did you mean \"--disk\"?); see petrel run --help");
  CHECK(cli_error({"run", "--floppy=x.img"}) ==
        "run: unknown flag \"--floppy\"; see petrel run --help");
  CHECK(cli_error({"run", "-v"}) ==
        "run: unexpected argument \"-v\"; settings are given as flags, see petrel run --help");
  CHECK(cli_error({"run", "--kernel", kernel, "extra"}) ==
        "run: unexpected argument \"extra\"; settings are given as flags, see petrel run --help");
  CHECK(cli_error({"run", "--config="}) == "--config: must not be empty");
}

TEST_CASE("flags override --config values in any order", "[cli]") {
  ScratchDir dir;
  dir.write("kernels/vmlinux", "kernel");
  std::string other_kernel = dir.write("other/bzImage", "kernel").string();
  dir.write("kernels/initrd.img", "ramdisk");
  std::string other_initrd = dir.write("other/initrd.img", "ramdisk").string();
  std::string file = dir.write("vm.json", R"({"name": "from-file", "kernel": "kernels/vmlinux",
      "initrd": "kernels/initrd.img", "memory": "512M", "vcpus": 2,
      "log": {"level": "warn", "format": "json"}})")
                         .string();

  auto merged = parse({"run", "--vcpus", "4", "--config", file, "--log-level=debug"});
  REQUIRE(merged.ok());
  CHECK(merged->kind == CliCommandKind::kRun);
  CHECK(merged->config.vcpus == 4);
  CHECK(merged->config.log_level == "debug");
  CHECK(merged->config.name == "from-file");
  CHECK(merged->config.memory_bytes == 512ull << 20);
  CHECK(merged->config.log_format == LogFormat::kJson);
  CHECK(merged->config.kernel == dir.path() / "kernels/vmlinux");
  CHECK(merged->config.initrd == dir.path() / "kernels/initrd.img");

  auto kernel_flag = parse({"run", "--kernel", other_kernel, "--config=" + file});
  REQUIRE(kernel_flag.ok());
  CHECK(kernel_flag->config.kernel == other_kernel);
  CHECK(kernel_flag->config.initrd == dir.path() / "kernels/initrd.img");

  auto initrd_flag = parse({"run", "--config", file, "--initrd", other_initrd});
  REQUIRE(initrd_flag.ok());
  CHECK(initrd_flag->config.initrd == other_initrd);

  std::string no_kernel = dir.write("no-kernel.json", R"({"vcpus": 3})").string();
  CHECK(cli_error({"run", "--config", no_kernel}) ==
        "run: --kernel is required (or \"kernel\" in the --config file)");
  auto completed = parse({"run", "--config", no_kernel, "--kernel", other_kernel});
  REQUIRE(completed.ok());
  CHECK(completed->config.vcpus == 3);
}

TEST_CASE("petrel run reports --config file errors", "[cli]") {
  ScratchDir dir;
  std::string kernel = dir.write("vmlinux", "kernel").string();

  std::string missing = (dir.path() / "nope.json").string();
  auto not_found = parse({"run", "--config", missing});
  REQUIRE_FALSE(not_found.ok());
  CHECK(not_found.error().code() == ErrorCode::kNotFound);
  CHECK(not_found.error().to_string() == "config: " + missing + ": No such file or directory");

  std::string bad_kernel = dir.write("bad-kernel.json", R"({"kernel": "gone/vmlinux"})").string();
  CHECK(cli_error({"run", "--config", bad_kernel}) ==
        bad_kernel + ": config: field \"kernel\": " + (dir.path() / "gone/vmlinux").string() +
            ": No such file or directory");
  CHECK(parse({"run", "--config", bad_kernel, "--kernel", kernel}).ok());

  std::string bad_initrd =
      dir.write("bad-initrd.json", R"({"kernel": "vmlinux", "initrd": "gone/initrd.img"})")
          .string();
  auto initrd_not_found = parse({"run", "--config", bad_initrd});
  REQUIRE_FALSE(initrd_not_found.ok());
  CHECK(initrd_not_found.error().code() == ErrorCode::kNotFound);
  CHECK(initrd_not_found.error().to_string() ==
        bad_initrd + ": config: field \"initrd\": " + (dir.path() / "gone/initrd.img").string() +
            ": No such file or directory");
  std::string initrd = dir.write("initrd.img", "ramdisk").string();
  CHECK(parse({"run", "--config", bad_initrd, "--initrd", initrd}).ok());
  std::string empty_initrd = dir.write("empty-initrd.json", R"({"initrd": ""})").string();
  CHECK(cli_error({"run", "--config", empty_initrd, "--kernel", kernel}) ==
        empty_initrd + ": config: field \"initrd\": must not be empty");

  std::string bad_value = dir.write("bad-value.json", R"({"vcpus": 0})").string();
  CHECK(cli_error({"run", "--config", bad_value, "--vcpus", "2"}) ==
        bad_value + ": config: field \"vcpus\": expected an integer from 1 to 254, got 0");
}

TEST_CASE("usage_text documents every flag with an example", "[cli]") {
  std::string usage = petrel::usage_text();
  for (const char* flag : {"--kernel PATH", "--initrd PATH", "--cmdline STR", "--memory SIZE",
                           "--vcpus N", "--serial DEST", "--log-level LEVEL", "--log-format FORMAT",
                           "--name NAME", "--pvm-mode MODE", "--config FILE", "--help"}) {
    CHECK_THAT(usage, Catch::Contains(flag));
  }
  CHECK_THAT(usage, Catch::Contains("socket:PATH"));
  for (const char* example : {"e.g. --memory 1G", "e.g. --serial file:/tmp/console.log",
                              "e.g. --config configs/example-full.json"}) {
    CHECK_THAT(usage, Catch::Contains(example));
  }
  CHECK_THAT(usage, Catch::Contains("Exit status"));
  CHECK_THAT(usage, Catch::Contains("override"));
}

TEST_CASE("serve, restore and receive take the host flags and their operand", "[cli]") {
  auto restore = parse({"restore", "/var/lib/snap", "--paused", "--api-socket", "/tmp/a.sock",
                        "--serial=file:/tmp/console.log", "--name", "web-1"});
  REQUIRE(restore.ok());
  CHECK(restore->kind == CliCommandKind::kRestore);
  CHECK(restore->snapshot == "/var/lib/snap");
  CHECK(restore->paused);
  CHECK(restore->config.api_socket == "/tmp/a.sock");
  CHECK(restore->config.serial.mode == SerialMode::kFile);
  CHECK(restore->config.name == "web-1");

  // The operand may come after the flags; --paused is optional.
  auto later = parse({"restore", "--log-level", "debug", "snapdir"});
  REQUIRE(later.ok());
  CHECK(later->snapshot == "snapdir");
  CHECK_FALSE(later->paused);
  CHECK(later->config.log_level == "debug");

  auto receive = parse({"receive", "tcp:0.0.0.0:4444", "--api-socket", "/tmp/b.sock"});
  REQUIRE(receive.ok());
  CHECK(receive->kind == CliCommandKind::kReceive);
  CHECK(receive->listen == "tcp:0.0.0.0:4444");

  auto serve = parse({"serve", "--api-socket", "/tmp/c.sock"});
  REQUIRE(serve.ok());
  CHECK(serve->kind == CliCommandKind::kServe);
  CHECK(kind_of({"serve", "--help"}) == CliCommandKind::kHelp);

  CHECK_THAT(cli_error({"serve"}), Catch::Matchers::Contains("--api-socket is required"));
  CHECK_THAT(cli_error({"serve", "x"}), Catch::Matchers::Contains("unexpected argument \"x\""));
  CHECK_THAT(cli_error({"restore"}), Catch::Matchers::Contains("missing the snapshot directory"));
  CHECK_THAT(cli_error({"receive", "--api-socket", "/tmp/s"}),
             Catch::Matchers::Contains("missing the address"));
  CHECK_THAT(cli_error({"restore", "a", "b"}), Catch::Matchers::Contains("unexpected argument"));
  // The guest's settings come with the snapshot: run's other flags are refused.
  CHECK_THAT(cli_error({"restore", "snap", "--memory", "1G"}),
             Catch::Matchers::Contains("restore: unknown flag \"--memory\""));
  CHECK_THAT(cli_error({"receive", "unix:/tmp/m", "--paused"}),
             Catch::Matchers::Contains("unknown flag \"--paused\""));
  CHECK_THAT(cli_error({"restore", "snap", "--log-level", "loud"}),
             Catch::Matchers::Contains("--log-level"));
}

#include "vmm/cli.h"

#include <algorithm>
#include <array>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "vmm/config_checks.h"

namespace petrel {
namespace {

using namespace config_detail;

// One `petrel run` flag. To add a flag: write an apply function and add a row to kRunFlags
// (and to docs/config.md).
struct FlagSpec {
  std::string_view name;     // "--memory"
  std::string_view metavar;  // "SIZE"; empty for a flag without a value
  std::string_view help;     // one line for usage_text()
  std::string_view example;  // a complete example use
  // Checks `value` and stores it into `config`. The error message leaves out the flag name.
  // nullptr for the flags parse_run handles itself (--config, --help).
  Result<void> (*apply)(std::string_view value, VmConfig& config);
  // A list flag (--disk, --net) may be given more than once; the first one given replaces the
  // list read from --config (reset), each adds one entry.
  void (*reset)(VmConfig& config) = nullptr;
  // The value may be left out (--rng): "" is applied then.
  bool optional_value = false;
};

Result<void> apply_kernel(std::string_view value, VmConfig& config) {
  std::filesystem::path kernel(value);
  PETREL_TRY(check_input_file(kernel));
  config.kernel = std::move(kernel);
  return ok();
}

Result<void> apply_initrd(std::string_view value, VmConfig& config) {
  std::filesystem::path initrd(value);
  PETREL_TRY(check_input_file(initrd));
  config.initrd = std::move(initrd);
  return ok();
}

Result<void> apply_cmdline(std::string_view value, VmConfig& config) {
  PETREL_TRY(check_cmdline(value));
  config.cmdline = std::string(value);
  return ok();
}

Result<void> apply_memory(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(uint64_t bytes, parse_size(value));
  PETREL_TRY(check_memory(bytes));
  config.memory_bytes = bytes;
  return ok();
}

Result<void> apply_vcpus(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.vcpus, parse_vcpus(value));
  return ok();
}

Result<void> apply_serial(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(SerialConfig serial, parse_serial_spec(value));
  if (serial.mode == SerialMode::kFile) {
    PETREL_TRY(check_serial_file(serial.path));
  } else if (serial.mode == SerialMode::kSocket) {
    PETREL_TRY(check_serial_socket(serial.path));
  }
  config.serial = std::move(serial);
  return ok();
}

Result<void> apply_name(std::string_view value, VmConfig& config) {
  PETREL_TRY(check_name(value));
  config.name = std::string(value);
  return ok();
}

Result<void> apply_log_level(std::string_view value, VmConfig& config) {
  PETREL_TRY(check_log_level(value));
  config.log_level = std::string(value);
  return ok();
}

Result<void> apply_log_format(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.log_format, parse_log_format(value));
  return ok();
}

Result<void> apply_pvm_mode(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.pvm_mode, parse_pvm_mode(value));
  return ok();
}

Result<void> apply_seccomp(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.seccomp, parse_seccomp_mode(value));
  return ok();
}

Result<void> apply_disk(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(DiskSpec disk, parse_disk_option(value));
  PETREL_TRY(check_disk_file(disk.path, disk.read_only));
  config.disks.push_back(std::move(disk));
  return ok();
}

Result<void> apply_net(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(NetSpec net, parse_net_option(value));
  config.nets.push_back(std::move(net));
  return ok();
}

Result<void> apply_rng(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.rng, parse_rng_option(value));
  return ok();
}

Result<void> apply_balloon(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.balloon, parse_balloon_option(value));
  return ok();
}

Result<void> apply_virtio_transport(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.virtio_transport, parse_virtio_transport(value));
  return ok();
}

Result<void> apply_api_socket(std::string_view value, VmConfig& config) {
  std::filesystem::path path(value);
  PETREL_TRY(check_listen_socket(path));
  config.api_socket = std::move(path);
  return ok();
}

Result<void> apply_no_autostart(std::string_view /*value*/, VmConfig& config) {
  config.autostart = false;
  return ok();
}

Result<void> apply_on_reboot(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.on_reboot, parse_reboot_action(value));
  return ok();
}

Result<void> apply_user(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(config.run_as, resolve_run_as(value));
  return ok();
}

Result<void> apply_shutdown_timeout(std::string_view value, VmConfig& config) {
  PETREL_TRY_ASSIGN(uint64_t ms, parse_duration_ms(value));
  PETREL_TRY(check_shutdown_timeout_ms(ms));
  config.shutdown_timeout_ms = static_cast<uint32_t>(ms);
  return ok();
}

void reset_disks(VmConfig& config) {
  config.disks.clear();
}
void reset_nets(VmConfig& config) {
  config.nets.clear();
}

constexpr std::string_view kConfigFlag = "--config";
constexpr std::string_view kHelpFlag = "--help";

constexpr std::array<FlagSpec, 23> kRunFlags{{
    {"--kernel", "PATH", "Guest kernel image (required unless the --config file sets \"kernel\")",
     "--kernel ./vmlinux", apply_kernel},
    {"--initrd", "PATH", "Initial ramdisk for the kernel (default: none)",
     "--initrd ./initramfs.cpio.gz", apply_initrd},
    {"--cmdline", "STR", "Kernel command line, at most 4095 bytes (default: empty)",
     "--cmdline \"console=ttyS0 panic=-1\"", apply_cmdline},
    {"--memory", "SIZE", "Guest RAM: 16M to 1T, a multiple of 4K (default 256M)", "--memory 1G",
     apply_memory},
    {"--vcpus", "N", "Number of vCPUs: 1 to 254 (default 1)", "--vcpus 4", apply_vcpus},
    {"--serial", "DEST",
     "Guest console (COM1): stdio, none, file:PATH or socket:PATH (default stdio)",
     "--serial file:/tmp/console.log", apply_serial},
    {"--name", "NAME", "VM name used in logs: 1-64 of A-Z a-z 0-9 . _ - (default petrel)",
     "--name web-1", apply_name},
    {"--log-level", "LEVEL", "trace, debug, info, warn, error or off (default info)",
     "--log-level debug", apply_log_level},
    {"--log-format", "FORMAT",
     "Log lines on stderr as text, json or journal (default text; journal when stderr is the "
     "journal)",
     "--log-format json", apply_log_format},
    {"--pvm-mode", "MODE", "auto, or emulated to force PVM's emulated mode (default auto)",
     "--pvm-mode emulated", apply_pvm_mode},
    {"--seccomp", "MODE",
     "Per-thread seccomp filters: on (a denied call stops petrel), log (the kernel logs it) or "
     "off (default on)",
     "--seccomp log", apply_seccomp},
    {"--disk", "OPTS",
     "A virtio-blk disk (repeatable): path=FILE[,readonly=on][,serial=S][,engine=auto|uring|"
     "sync][,transport=mmio|pci]",
     "--disk path=root.img,serial=root", apply_disk, reset_disks},
    {"--net", "OPTS",
     "A virtio-net NIC on a TAP (repeatable): [tap=NAME][,mac=MAC][,mtu=N][,transport=mmio|pci]",
     "--net tap=tap0,mac=52:54:00:12:34:56", apply_net, reset_nets},
    {"--rng", "[OPTS]", "A virtio-rng entropy device fed by getrandom: [transport=mmio|pci]",
     "--rng", apply_rng, nullptr, true},
    {"--balloon", "[OPTS]",
     "A virtio-balloon device: [target=SIZE][,deflate_on_oom=on|off][,stats_interval=DURATION]"
     "[,free_page_reporting=on|off][,transport=mmio|pci] (defaults: 0, on, 5s, off)",
     "--balloon target=128M,stats_interval=10s", apply_balloon, nullptr, true},
    {"--virtio-transport", "T",
     "Transport of virtio devices that do not say: mmio or pci "
     "(default mmio)",
     "--virtio-transport pci", apply_virtio_transport},
    {"--api-socket", "PATH",
     "Serve the control API (docs/api.md) on a Unix socket at PATH, mode 0600 (default: no API)",
     "--api-socket /run/petrel/web-1.sock", apply_api_socket},
    {"--no-autostart", "",
     "Do not boot the guest: stay \"created\" until the API's PUT /v1/vm/start",
     "--no-autostart --api-socket /tmp/vm.sock", apply_no_autostart},
    {"--on-reboot", "ACTION",
     "What a guest or API reboot does: restart (rebuild and boot again) or exit (default "
     "restart)",
     "--on-reboot exit", apply_on_reboot},
    {"--shutdown-timeout", "DURATION",
     "How long a graceful shutdown waits before stopping hard: 1ms to 1h, e.g. 1500ms, 30s, 2m "
     "(plain digits are seconds; default 30s)",
     "--shutdown-timeout 10s", apply_shutdown_timeout},
    {"--user", "USER[:GROUP]",
     "Run the guest as USER (and GROUP) once /dev/kvm, images, TAPs and sockets are open; "
     "petrel must start as root",
     "--user petrel:kvm", apply_user},
    {kConfigFlag, "FILE", "Read settings from a JSON config file; flags override it",
     "--config configs/example-full.json", nullptr},
    {kHelpFlag, "", "Show this help and exit", "petrel run --help", nullptr},
}};

constexpr std::array<std::string_view, kRunFlags.size()> run_flag_names() {
  std::array<std::string_view, kRunFlags.size()> names{};
  for (size_t i = 0; i < names.size(); ++i) {
    names[i] = kRunFlags[i].name;
  }
  return names;
}

const FlagSpec* find_flag(std::string_view name) {
  auto it = std::find_if(kRunFlags.begin(), kRunFlags.end(),
                         [name](const FlagSpec& spec) { return spec.name == name; });
  return it == kRunFlags.end() ? nullptr : &*it;
}

Error usage_error(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

Error unknown_flag(std::string_view name) {
  std::string message = "run: unknown flag " + json_quoted(name);
  constexpr auto kNames = run_flag_names();
  if (std::string_view suggestion = closest_match(name, kNames); !suggestion.empty()) {
    message += " (did you mean " + json_quoted(suggestion) + "?)";
  }
  return usage_error(message + "; see petrel run --help");
}

struct GivenFlag {
  const FlagSpec* spec;
  std::string_view value;
};

// The flags of `args` (all of them flags of kRunFlags, or of `allowed` when given); an
// empty result with `help` set for --help / -h.
Result<std::vector<GivenFlag>> parse_flags(std::span<const std::string_view> args, bool& help,
                                           std::span<const std::string_view> allowed = {},
                                           std::string_view command = "run") {
  std::vector<GivenFlag> given;
  help = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "-h") {
      help = true;
      return given;
    }
    if (!arg.starts_with("--")) {
      return usage_error(std::string(command) + ": unexpected argument " + json_quoted(arg) +
                         "; settings are given as flags, see petrel " + std::string(command) +
                         " --help");
    }
    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const FlagSpec* spec = find_flag(name);
    const bool permitted = allowed.empty() || name == kHelpFlag ||
                           std::find(allowed.begin(), allowed.end(), name) != allowed.end();
    if (spec == nullptr && allowed.empty()) {
      return unknown_flag(name);
    }
    if (spec == nullptr || !permitted) {
      return usage_error(std::string(command) + ": unknown flag " + json_quoted(name) +
                         "; see petrel " + std::string(command) + " --help");
    }
    if (spec->metavar.empty() && inline_value) {
      return usage_error(std::string(name) + ": takes no value");
    }
    if (spec->name == kHelpFlag) {
      help = true;
      return given;
    }
    if (spec->reset == nullptr &&
        std::any_of(given.begin(), given.end(),
                    [spec](const GivenFlag& g) { return g.spec == spec; })) {
      return usage_error(std::string(name) + ": given more than once");
    }
    if (spec->metavar.empty()) {  // a switch (--no-autostart): applied with ""
      given.push_back({spec, {}});
      continue;
    }
    std::string_view value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else if (spec->optional_value) {
      value = {};
    } else {
      return usage_error(std::string(name) + ": missing value (" + std::string(spec->metavar) +
                         "), e.g. " + std::string(spec->example));
    }
    given.push_back({spec, value});
  }
  return given;
}

// Applies `given` to `config` (resets of repeatable flags first).
Result<void> apply_flags(const std::vector<GivenFlag>& given, VmConfig& config) {
  for (const GivenFlag& flag : given) {
    if (flag.spec->reset != nullptr) {
      flag.spec->reset(config);
    }
  }
  for (const GivenFlag& flag : given) {
    if (flag.spec->apply == nullptr) {
      continue;
    }
    if (auto applied = flag.spec->apply(flag.value, config); !applied.ok()) {
      return with_prefix(flag.spec->name, applied.error());
    }
  }
  return {};
}

Result<CliCommand> parse_run(std::span<const std::string_view> args) {
  bool help = false;
  PETREL_TRY_ASSIGN(auto given, parse_flags(args, help));
  if (help) {
    return CliCommand{CliCommandKind::kHelp, {}, {}, false, {}};
  }
  VmConfig config;
  auto config_flag = std::find_if(given.begin(), given.end(),
                                  [](const GivenFlag& g) { return g.spec->name == kConfigFlag; });
  std::optional<std::filesystem::path> config_file;
  if (config_flag != given.end()) {
    if (config_flag->value.empty()) {
      return usage_error(std::string(kConfigFlag) + ": must not be empty");
    }
    config_file = std::filesystem::path(config_flag->value);
    PETREL_TRY_ASSIGN(config, load_config_file(*config_file));
  }
  PETREL_TRY(apply_flags(given, config));
  if (config.kernel.empty()) {
    return usage_error("run: --kernel is required (or \"kernel\" in the --config file)");
  }
  // Flag values were checked as they were applied, so what fails here came from the file.
  if (auto valid = validate_config(config); !valid.ok()) {
    Error error = std::move(valid).error();
    if (config_file) {
      error.context(config_file->string());
    }
    return error;
  }
  return CliCommand{CliCommandKind::kRun, std::move(config), {}, false, {}};
}

// The flags `petrel serve`, `restore` and `receive` take: where this petrel's console, API
// and logs go. The guest itself comes from the snapshot or the incoming migration.
constexpr std::array<std::string_view, 7> kHostFlags{
    "--api-socket", "--serial", "--name", "--log-level", "--log-format", "--user", "--seccomp"};

// `petrel serve [FLAGS]`, `petrel restore DIR [--paused] [FLAGS]`,
// `petrel receive LISTEN [FLAGS]`.
Result<CliCommand> parse_host_command(CliCommandKind kind, std::string_view command,
                                      std::span<const std::string_view> args) {
  CliCommand out{kind, {}, {}, false, {}};
  std::vector<std::string_view> flags;
  std::optional<std::string_view> operand;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (kind == CliCommandKind::kRestore && arg == "--paused") {
      out.paused = true;
    } else if (arg.starts_with("-")) {
      flags.push_back(arg);
      // Every host flag takes a value: the next word is it unless written --flag=VALUE.
      if (arg.starts_with("--") && arg.find('=') == std::string_view::npos && i + 1 < args.size() &&
          !args[i + 1].starts_with("--")) {
        flags.push_back(args[++i]);
      }
    } else if (kind != CliCommandKind::kServe && !operand) {
      operand = arg;
    } else {
      return usage_error(std::string(command) + ": unexpected argument " + json_quoted(arg));
    }
  }
  bool help = false;
  PETREL_TRY_ASSIGN(auto given, parse_flags(flags, help, kHostFlags, command));
  if (help) {
    return CliCommand{CliCommandKind::kHelp, {}, {}, false, {}};
  }
  PETREL_TRY(apply_flags(given, out.config));
  if (kind == CliCommandKind::kRestore) {
    if (!operand || operand->empty()) {
      return usage_error(
          "restore: missing the snapshot directory, e.g. petrel restore "
          "/var/lib/petrel/web-1.snap");
    }
    out.snapshot = std::filesystem::path(*operand);
  } else if (kind == CliCommandKind::kReceive) {
    if (!operand || operand->empty()) {
      return usage_error(
          "receive: missing the address to listen on, e.g. petrel receive tcp:0.0.0.0:4444");
    }
    out.listen = std::string(*operand);
  } else if (out.config.api_socket.empty()) {
    return usage_error("serve: --api-socket is required (the API is how the VM arrives)");
  }
  return out;
}

Result<CliCommand> parse_top_level(std::span<const std::string_view> args) {
  if (args.empty()) {
    return usage_error(
        "missing command: expected run, serve, restore, receive, help or version; see petrel "
        "--help");
  }
  std::string_view command = args[0];
  auto rest = args.subspan(1);
  if (command == "run") {
    return parse_run(rest);
  }
  if (command == "serve") {
    return parse_host_command(CliCommandKind::kServe, command, rest);
  }
  if (command == "restore") {
    return parse_host_command(CliCommandKind::kRestore, command, rest);
  }
  if (command == "receive") {
    return parse_host_command(CliCommandKind::kReceive, command, rest);
  }
  if (command == "help" || command == "--help" || command == "-h") {
    if (!rest.empty() && !(rest.size() == 1 && rest[0] == "run")) {
      return usage_error(std::string(command) + ": unexpected argument " + json_quoted(rest[0]));
    }
    return CliCommand{CliCommandKind::kHelp, {}, {}, false, {}};
  }
  if (command == "version" || command == "--version") {
    if (!rest.empty()) {
      return usage_error(std::string(command) + ": unexpected argument " + json_quoted(rest[0]));
    }
    return CliCommand{CliCommandKind::kVersion, {}, {}, false, {}};
  }
  std::string message = "unknown command " + json_quoted(command) +
                        ": expected run, serve, restore, receive, help or version";
  if (command.starts_with("--") && find_flag(command.substr(0, command.find('='))) != nullptr) {
    message += "; flags go after the command, e.g. petrel run " + std::string(command);
  }
  return usage_error(std::move(message));
}

}  // namespace

Result<CliCommand> parse_command_line(std::span<const std::string_view> args) {
  try {
    return parse_top_level(args);
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal, std::string("command line: ") + e.what());
  }
}

std::string usage_text() {
  constexpr size_t kColumn = 24;
  const std::string indent(kColumn, ' ');
  std::string out =
      "Usage:\n"
      "  petrel run [FLAGS]      Boot a VM and run it until the guest powers off\n"
      "  petrel restore DIR [--paused] [HOST FLAGS]\n"
      "                          Build the VM saved in snapshot directory DIR and run it on\n"
      "  petrel receive ADDR [HOST FLAGS]\n"
      "                          Wait on ADDR (unix:PATH or tcp:HOST:PORT) for a VM migrated\n"
      "                          from another petrel, then run it\n"
      "  petrel serve [HOST FLAGS]\n"
      "                          Start without a VM: the API (--api-socket, required) restores\n"
      "                          one or receives a migration\n"
      "  petrel help             Show this help\n"
      "  petrel version          Print the version\n"
      "\n"
      "Flags for petrel run (--flag VALUE and --flag=VALUE both work):\n";
  for (const FlagSpec& flag : kRunFlags) {
    std::string head = "  " + std::string(flag.name);
    if (!flag.metavar.empty()) {
      head += " " + std::string(flag.metavar);
    }
    head.resize(std::max(head.size() + 1, kColumn), ' ');
    out += head + std::string(flag.help) + "\n";
    out += indent + "e.g. " + std::string(flag.example) + "\n";
  }
  out +=
      "\n"
      "HOST FLAGS (serve, restore, receive): --api-socket, --serial, --name, --log-level,\n"
      "--log-format and --seccomp; everything else comes from the snapshot or the migrated VM's\n"
      "config.\n"
      "\n"
      "Flags on the command line override the same settings from --config, in any order.\n"
      "Relative paths inside a config file resolve against the file's directory.\n"
      "SIZE is digits with an optional K, M, G or T suffix (powers of 1024), e.g. 512M.\n"
      "--serial socket:PATH listens on a Unix socket (mode 0600) at PATH: one client at a time\n"
      "gets the guest console, both ways; a second client is disconnected at once; petrel's\n"
      "stdin is not read. Output before the first client waits for it (up to 64K); later,\n"
      "output while no client is connected is discarded. PATH is removed when petrel exits.\n"
      "--api-socket PATH serves the HTTP/JSON control API (docs/api.md) on a Unix socket\n"
      "(mode 0600); a stale socket file at PATH is replaced, a live one is refused.\n"
      "\n"
      "Exit status of petrel run:\n"
      "  0      the guest powered off or reset\n"
      "  N      the guest wrote N to the exit device (I/O port 0xf4)\n"
      "  128+N  stopped hard by signal N (SIGINT, SIGTERM): a first signal asks the guest to\n"
      "         shut down (exit 0 when it does) and stops it hard after --shutdown-timeout;\n"
      "         a second signal, or one while the guest is not running, stops it at once\n"
      "  1      an error while running the VM (the message is on stderr)\n"
      "  2      a bad command line or config file\n"
      "  159    a thread made a system call its seccomp filter denies (128+SIGSYS; the\n"
      "         line \"petrel: seccomp: ...\" on stderr names the thread and the call)\n"
      "\n"
      "Examples:\n"
      "  petrel run --kernel ./vmlinux --cmdline \"console=ttyS0\" --memory 512M --vcpus 2\n"
      "  petrel run --config configs/example-full.json --vcpus=4 --log-level debug\n"
      "  petrel run --kernel ./vmlinux --api-socket /tmp/vm.sock --no-autostart\n"
      "\n"
      "The config file format and all settings: docs/config.md\n";
  return out;
}

}  // namespace petrel

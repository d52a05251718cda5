#include "api/petrelctl/ctl_args.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "vmm/base/byte_size.h"

namespace petrel::ctl {
namespace {

struct VerbDoc {
  Verb verb;
  std::string_view name;
  std::string_view synopsis;  // options after the verb
  std::string_view summary;   // one line for the general usage
  std::string_view details;   // the rest of `VERB --help`, may be empty
};

constexpr std::array kVerbDocs{
    VerbDoc{Verb::kInfo, "info", "", "show the VM's name, state, size, uptime, ...", ""},
    VerbDoc{Verb::kState, "state", "", "print the VM's state (running, paused, ...)", ""},
    VerbDoc{Verb::kConfig, "config", "", "print the VM's effective configuration (JSON)", ""},
    VerbDoc{Verb::kStart, "start", "", "start a created VM", ""},
    VerbDoc{Verb::kPause, "pause", "", "pause the vCPUs", ""},
    VerbDoc{Verb::kResume, "resume", "", "resume a paused VM", ""},
    VerbDoc{Verb::kShutdown, "shutdown", "[--timeout SEC] [--wait]",
            "ask the guest to shut down (Ctrl-Alt-Del), stop it hard after the timeout",
            "  --timeout SEC  grace period before petrel stops the VM hard (default: petrel's,\n"
            "                 30 s); 0.001 to 3600\n"
            "  --wait         return only once the VM is shut off or petrel has exited\n"},
    VerbDoc{Verb::kReboot, "reboot", "", "reset the guest", ""},
    VerbDoc{Verb::kStop, "stop", "", "stop the VM hard (no guest cooperation)", ""},
    VerbDoc{Verb::kMetrics, "metrics", "[--prometheus]", "show counters (vCPUs, disks, nets, API)",
            "  --prometheus   print the Prometheus text exposition format\n"},
    VerbDoc{Verb::kEvents, "events", "[--after N] [--count N]",
            "follow the VM's events, one line each",
            "  --after N      first replay the retained events with seq > N (0: all of them)\n"
            "  --count N      exit after N events\n"},
    VerbDoc{Verb::kList, "list", "[--dir DIR]", "list the VMs whose sockets are in DIR",
            "  --dir DIR      where the sockets are (default $PETREL_DIR or /run/petrel)\n"},
    VerbDoc{Verb::kSnapshot, "snapshot", "DIR [--pause]",
            "write a snapshot of the paused VM to the directory DIR",
            "  DIR            created if absent; must be empty or an earlier snapshot (replaced)\n"
            "  --pause        pause the VM first and resume it afterwards (even on failure)\n"},
    VerbDoc{Verb::kRestore, "restore", "DIR [--paused]",
            "restore a snapshot into a petrel started without a VM (petrel serve)",
            "  --paused       leave the restored VM paused\n"},
    VerbDoc{Verb::kMigrate, "migrate",
            "DEST [--downtime MS] [--timeout SEC] [--max-rounds N] [--wait]",
            "live-migrate the VM to DEST (unix:PATH or tcp:HOST:PORT)",
            "  --downtime MS  the longest pause to aim for, 1 to 60000 (default 300)\n"
            "  --timeout SEC  give up after this long, 1 to 86400 (default 600)\n"
            "  --max-rounds N pre-copy rounds before stopping the VM anyway, 1 to 1000\n"
            "                 (default 30)\n"
            "  --wait         print progress until the migration ends; exit 0 once completed\n"},
    VerbDoc{Verb::kMigrateReceive, "migrate-receive", "LISTEN [--timeout SEC] [--wait]",
            "wait for an incoming VM on LISTEN (unix:PATH or tcp:HOST:PORT)",
            "  --timeout SEC  give up after this long, 1 to 86400 (default 600)\n"
            "  --wait         print progress until the migration ends; exit 0 once completed\n"},
    VerbDoc{Verb::kMigrateStatus, "migrate-status", "", "show the current or last migration", ""},
    VerbDoc{Verb::kMigrateCancel, "migrate-cancel", "", "cancel the active migration", ""},
    VerbDoc{Verb::kBalloon, "balloon", "[set SIZE | stats]",
            "show the balloon's target and actual size",
            "  set SIZE       ask the guest to give SIZE to the balloon (petrelctl balloon set)\n"
            "  stats          the guest's memory statistics and their age\n"},
    VerbDoc{Verb::kBalloonSet, "balloon set", "SIZE",
            "set the balloon's target: the memory taken from the guest",
            "  SIZE           bytes with an optional K, M, G or T suffix (powers of 1024), a\n"
            "                 multiple of 4K below the guest's RAM; 0 gives everything back\n"},
    VerbDoc{Verb::kBalloonStats, "balloon stats", "",
            "show the guest's memory statistics (free, available, caches, swap, faults)", ""},
    VerbDoc{Verb::kSetmem, "setmem", "SIZE",
            "set the guest's memory to SIZE (the balloon takes the rest of its RAM)",
            "  SIZE           bytes with an optional K, M, G or T suffix (powers of 1024), a\n"
            "                 multiple of 4K, at most the guest's RAM\n"},
    VerbDoc{Verb::kHelp, "help", "[VERB]", "show this help or a verb's", ""},
};

const VerbDoc& doc_of(Verb verb) {
  for (const auto& doc : kVerbDocs) {
    if (doc.verb == verb) {
      return doc;
    }
  }
  return kVerbDocs.back();
}

constexpr std::string_view kGlobalOptions =
    "  -s, --socket PATH|NAME  the VM's API socket; a bare NAME means DIR/NAME.sock\n"
    "  --dir DIR               socket directory (default $PETREL_DIR or /run/petrel)\n"
    "  --json                  print the API's JSON instead of the readable form\n"
    "  --timeout SEC           request timeout before the verb (default 10)\n"
    "  -h, --help              show help\n";

constexpr std::string_view kExitCodes =
    "Exit status: 0 success, 1 the API answered an error or something unexpected failed,\n"
    "2 usage error, 3 cannot connect (no socket, nobody listening, timeout),\n"
    "4 refused in the VM's current state (HTTP 409).\n";

Error usage(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

// Seconds as a decimal number, > 0 and <= max_seconds, to whole milliseconds (at least 1).
Result<std::chrono::milliseconds> parse_seconds(std::string_view option, std::string_view text,
                                                double max_seconds) {
  double value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(value) || value <= 0 ||
      value > max_seconds) {
    return usage(fmt::format("{} wants seconds, more than 0 and at most {}, not '{}'", option,
                             max_seconds, text));
  }
  auto ms = static_cast<int64_t>(std::llround(value * 1000.0));
  return std::chrono::milliseconds(ms < 1 ? 1 : ms);
}

Result<uint64_t> parse_count(std::string_view option, std::string_view text, uint64_t min) {
  uint64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < min) {
    return usage(fmt::format("{} wants an integer of at least {}, not '{}'", option, min, text));
  }
  return value;
}

// Walks argv, handing out option values.
class ArgCursor {
 public:
  explicit ArgCursor(const std::vector<std::string>& args) : args_(args) {}
  bool done() const { return i_ >= args_.size(); }
  const std::string& next() { return args_[i_++]; }
  Result<std::string> value_of(std::string_view option) {
    if (done()) {
      return usage(fmt::format("{} needs a value", option));
    }
    return next();
  }

 private:
  const std::vector<std::string>& args_;
  size_t i_ = 0;
};

// Tries `arg` as one of the verb's own options. Returns false when it is not one.
Result<bool> parse_verb_option(CtlCommand& cmd, const std::string& arg, ArgCursor& cursor) {
  switch (cmd.verb) {
    case Verb::kShutdown:
      if (arg == "--timeout") {
        PETREL_TRY_ASSIGN(auto text, cursor.value_of(arg));
        PETREL_TRY_ASSIGN(cmd.shutdown_timeout, parse_seconds(arg, text, 3600));
        return true;
      }
      if (arg == "--wait") {
        cmd.wait = true;
        return true;
      }
      return false;
    case Verb::kMetrics:
      if (arg == "--prometheus") {
        cmd.prometheus = true;
        return true;
      }
      return false;
    case Verb::kSnapshot:
      if (arg == "--pause") {
        cmd.pause_first = true;
        return true;
      }
      return false;
    case Verb::kRestore:
      if (arg == "--paused") {
        cmd.restore_paused = true;
        return true;
      }
      return false;
    case Verb::kMigrate:
    case Verb::kMigrateReceive:
      if (arg == "--wait") {
        cmd.wait = true;
        return true;
      }
      if (arg == "--timeout") {
        PETREL_TRY_ASSIGN(auto text, cursor.value_of(arg));
        PETREL_TRY_ASSIGN(auto timeout,
                          parse_seconds(arg, text, kMaxMigrationTimeout.count() / 1000.0));
        if (timeout < kMinMigrationTimeout) {
          return usage(fmt::format("{} wants at least 1 second, not '{}'", arg, text));
        }
        cmd.migrate_timeout = timeout;
        return true;
      }
      if (cmd.verb == Verb::kMigrate && arg == "--downtime") {
        PETREL_TRY_ASSIGN(auto text, cursor.value_of(arg));
        PETREL_TRY_ASSIGN(auto ms, parse_count(arg, text, 1));
        if (ms > static_cast<uint64_t>(kMaxMigrationDowntime.count())) {
          return usage(fmt::format("{} wants milliseconds, 1 to {}, not '{}'", arg,
                                   kMaxMigrationDowntime.count(), text));
        }
        cmd.migrate_downtime = std::chrono::milliseconds(ms);
        return true;
      }
      if (cmd.verb == Verb::kMigrate && arg == "--max-rounds") {
        PETREL_TRY_ASSIGN(auto text, cursor.value_of(arg));
        PETREL_TRY_ASSIGN(auto n, parse_count(arg, text, 1));
        if (n > kMaxMigrationRounds) {
          return usage(fmt::format("{} wants 1 to {}, not '{}'", arg, kMaxMigrationRounds, text));
        }
        cmd.max_rounds = static_cast<uint32_t>(n);
        return true;
      }
      return false;
    case Verb::kEvents:
      if (arg == "--after" || arg == "--count") {
        PETREL_TRY_ASSIGN(auto text, cursor.value_of(arg));
        PETREL_TRY_ASSIGN(auto n, parse_count(arg, text, arg == "--after" ? 0 : 1));
        (arg == "--after" ? cmd.after : cmd.count) = n;
        return true;
      }
      return false;
    default:
      return false;
  }
}

// Tries `arg` as a global option. Returns false when it is not one.
Result<bool> parse_global_option(CtlCommand& cmd, const std::string& arg, ArgCursor& cursor,
                                 std::optional<std::string>& socket_arg) {
  if (arg == "-s" || arg == "--socket") {
    PETREL_TRY_ASSIGN(auto value, cursor.value_of(arg));
    if (value.empty()) {
      return usage(fmt::format("{} needs a non-empty value", arg));
    }
    socket_arg = std::move(value);
    return true;
  }
  if (arg == "--dir") {
    PETREL_TRY_ASSIGN(cmd.dir, cursor.value_of(arg));
    if (cmd.dir.empty()) {
      return usage("--dir needs a non-empty value");
    }
    return true;
  }
  if (arg == "--json") {
    cmd.json = true;
    return true;
  }
  if (arg == "--timeout") {
    PETREL_TRY_ASSIGN(auto text, cursor.value_of(arg));
    PETREL_TRY_ASSIGN(cmd.request_timeout, parse_seconds(arg, text, 3600));
    return true;
  }
  if (arg == "-h" || arg == "--help") {
    cmd.show_help = true;
    return true;
  }
  return false;
}

// A balloon subcommand word after `balloon`.
Result<void> balloon_subcommand(CtlCommand& cmd, std::string_view word) {
  if (word == "set") {
    cmd.verb = Verb::kBalloonSet;
  } else if (word == "stats") {
    cmd.verb = Verb::kBalloonStats;
  } else {
    return usage(fmt::format("balloon takes 'set SIZE' or 'stats', not '{}'", word));
  }
  return ok();
}

}  // namespace

Result<uint64_t> parse_size_arg(std::string_view text) {
  if (auto bytes = parse_byte_size(text); bytes.ok()) {
    return *bytes;
  }
  return usage(fmt::format(
      "a size is digits with an optional K, M, G or T suffix (e.g. 128M, 1G), not '{}'", text));
}

std::optional<Verb> verb_from_string(std::string_view word) {
  for (const auto& doc : kVerbDocs) {
    if (doc.name == word) {
      return doc.verb;
    }
  }
  return std::nullopt;
}

bool takes_target(Verb verb) {
  return verb == Verb::kSnapshot || verb == Verb::kRestore || verb == Verb::kMigrate ||
         verb == Verb::kMigrateReceive || verb == Verb::kBalloonSet || verb == Verb::kSetmem;
}

std::string_view to_string(Verb verb) {
  return doc_of(verb).name;
}

std::string resolve_socket(std::string_view value, std::string_view dir) {
  if (value.find('/') != std::string_view::npos) {
    return std::string(value);
  }
  std::string path(dir);
  if (!path.empty() && path.back() != '/') {
    path += '/';
  }
  return fmt::format("{}{}.sock", path, value);
}

Result<CtlCommand> parse_args(const std::vector<std::string>& args, std::string_view env_dir) {
  CtlCommand cmd;
  cmd.dir = env_dir.empty() ? std::string(kDefaultDir) : std::string(env_dir);
  std::optional<std::string> socket_arg;
  bool have_verb = false;
  ArgCursor cursor(args);
  while (!cursor.done()) {
    const std::string& arg = cursor.next();
    if (have_verb) {
      PETREL_TRY_ASSIGN(bool taken, parse_verb_option(cmd, arg, cursor));
      if (taken) {
        continue;
      }
    }
    PETREL_TRY_ASSIGN(bool taken, parse_global_option(cmd, arg, cursor, socket_arg));
    if (taken) {
      continue;
    }
    if (!arg.empty() && arg[0] == '-') {
      return usage(have_verb ? fmt::format("unknown option '{}' for {}", arg, to_string(cmd.verb))
                             : fmt::format("unknown option '{}'", arg));
    }
    if (have_verb && cmd.verb == Verb::kHelp) {
      // `help VERB`: the verb's help.
      auto topic = verb_from_string(arg);
      if (!topic) {
        return usage(fmt::format("unknown verb '{}'", arg));
      }
      cmd.verb = *topic;
      cmd.show_help = true;
      continue;
    }
    if (have_verb && cmd.verb == Verb::kBalloon) {
      PETREL_TRY(balloon_subcommand(cmd, arg));
      continue;
    }
    if (have_verb && takes_target(cmd.verb) && cmd.target.empty()) {
      if (arg.empty()) {
        return usage(fmt::format("{} needs a non-empty argument", to_string(cmd.verb)));
      }
      cmd.target = arg;
      continue;
    }
    if (have_verb) {
      return usage(fmt::format("unexpected argument '{}'", arg));
    }
    auto verb = verb_from_string(arg);
    if (!verb) {
      return usage(fmt::format("unknown verb '{}' (see petrelctl help)", arg));
    }
    cmd.verb = *verb;
    have_verb = true;
  }
  if (cmd.verb == Verb::kHelp) {
    cmd.show_help = true;
  }
  if (cmd.show_help) {
    return cmd;
  }
  if (takes_target(cmd.verb) && cmd.target.empty()) {
    return usage(fmt::format(
        "{} needs {}", to_string(cmd.verb),
        cmd.verb == Verb::kSnapshot || cmd.verb == Verb::kRestore ? "the snapshot directory"
        : cmd.verb == Verb::kMigrate ? "the destination (unix:PATH or tcp:HOST:PORT)"
        : cmd.verb == Verb::kMigrateReceive
            ? "the address to listen on (unix:PATH or tcp:HOST:PORT)"
            : "a size, e.g. 128M or 1G"));
  }
  if (cmd.verb == Verb::kBalloonSet || cmd.verb == Verb::kSetmem) {
    PETREL_TRY_ASSIGN(cmd.size_bytes, parse_size_arg(cmd.target));
  }
  if (socket_arg) {
    if (cmd.verb == Verb::kList) {
      return usage("list takes --dir, not a socket");
    }
    cmd.socket = resolve_socket(*socket_arg, cmd.dir);
  } else if (cmd.verb != Verb::kList) {
    return usage(fmt::format("{} needs the VM's socket: -s PATH or -s NAME", to_string(cmd.verb)));
  }
  return cmd;
}

std::string help_text(Verb verb) {
  if (verb == Verb::kHelp) {
    std::string text =
        "Usage: petrelctl [OPTIONS] VERB [VERB OPTIONS]\n"
        "Controls one petrel VM through its API socket.\n\nVerbs:\n";
    for (const auto& doc : kVerbDocs) {
      text += fmt::format("  {:<15} {:<25} {}\n", doc.name, doc.synopsis, doc.summary);
    }
    text += fmt::format("\nOptions:\n{}\n{}", kGlobalOptions, kExitCodes);
    text += "`petrelctl VERB --help` describes one verb.\n";
    return text;
  }
  const VerbDoc& doc = doc_of(verb);
  std::string summary(doc.summary);
  summary[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(summary[0])));
  std::string text =
      fmt::format("Usage: petrelctl {}{}{}{}\n{}.\n", verb == Verb::kList ? "" : "-s SOCKET ",
                  doc.name, doc.synopsis.empty() ? "" : " ", doc.synopsis, summary);
  if (!doc.details.empty()) {
    text += fmt::format("\n{}", doc.details);
  }
  text += fmt::format("\nOptions:\n{}\n{}", kGlobalOptions, kExitCodes);
  return text;
}

}  // namespace petrel::ctl

// petrelctl's command line: the verbs, the options, and how they are parsed. Pure: no I/O, so
// tests/unit/test_petrelctl_args.cc covers it without a server.
//
// Options given before the verb are global; after the verb, the verb's own options are tried
// first, then the global ones (so `shutdown --timeout 5` is the guest's timeout, while
// `--timeout 5 shutdown` is the request timeout).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/result.h"

namespace petrel::ctl {

enum class Verb {
  kHelp,
  kInfo,
  kState,
  kConfig,
  kPause,
  kResume,
  kShutdown,
  kReboot,
  kStop,
  kStart,
  kMetrics,
  kEvents,
  kList,
  kSnapshot,
  kRestore,
  kMigrate,
  kMigrateReceive,
  kMigrateStatus,
  kMigrateCancel,
  kBalloon,       // balloon: show target and actual size
  kBalloonSet,    // balloon set SIZE
  kBalloonStats,  // balloon stats
  kSetmem,        // setmem SIZE: the guest keeps SIZE, the balloon takes the rest
};

// "info", "state", ...; nullopt for an unknown word.
std::optional<Verb> verb_from_string(std::string_view word);
std::string_view to_string(Verb verb);

inline constexpr std::string_view kDefaultDir = "/run/petrel";
inline constexpr std::chrono::milliseconds kDefaultRequestTimeout{10000};
// Ranges of the migration options (the API's, docs/api.md).
inline constexpr std::chrono::milliseconds kMaxMigrationDowntime{60000};
inline constexpr std::chrono::milliseconds kMinMigrationTimeout{1000};
inline constexpr std::chrono::milliseconds kMaxMigrationTimeout{24 * 3600 * 1000};
inline constexpr uint32_t kMaxMigrationRounds = 1000;

struct CtlCommand {
  Verb verb = Verb::kHelp;
  // The help text was asked for (`-h`, `help [VERB]`, `VERB --help`): print help_text(verb)
  // (verb kHelp: the general usage) and do nothing else.
  bool show_help = false;
  std::string socket;  // resolved socket path; empty when none was given
  std::string dir;     // where `list` and bare socket names look
  bool json = false;   // print the API's JSON instead of the readable form
  std::chrono::milliseconds request_timeout = kDefaultRequestTimeout;

  // shutdown: the guest's grace period (sent as timeout_ms; nullopt: petrel's default), and
  // whether to wait until the guest is off or petrel has exited.
  std::optional<std::chrono::milliseconds> shutdown_timeout;
  bool wait = false;
  bool prometheus = false;        // metrics
  std::optional<uint64_t> after;  // events: replay retained history with seq > after
  std::optional<uint64_t> count;  // events: exit after this many events (>= 1)

  // The verb's one argument: snapshot/restore DIR, migrate DEST, migrate-receive LISTEN
  // (as given: a relative DIR or unix: path is made absolute by the runner).
  std::string target;
  bool pause_first = false;     // snapshot --pause: pause, snapshot, resume even on failure
  bool restore_paused = false;  // restore --paused
  // migrate / migrate-receive (nullopt: petrel's defaults); `wait` above: poll until done.
  std::optional<std::chrono::milliseconds> migrate_downtime;
  std::optional<std::chrono::milliseconds> migrate_timeout;
  std::optional<uint32_t> max_rounds;
  // balloon set / setmem: SIZE in bytes (parse_size_arg of `target`), filled in by parse_args.
  uint64_t size_bytes = 0;
};

// A size as the user writes it: digits with an optional binary suffix K, M, G, T (also KiB,
// MiB, GiB, TiB, or B for bytes; any case), e.g. "128M", "1G", "4096". Usage error otherwise.
Result<uint64_t> parse_size_arg(std::string_view text);

// Whether `verb` takes the positional argument `target` (and requires it).
bool takes_target(Verb verb);

// `args` are argv[1..]; `env_dir` is $PETREL_DIR (empty when unset). Errors are usage errors
// (kInvalidArgument) with a message meant for the user.
Result<CtlCommand> parse_args(const std::vector<std::string>& args, std::string_view env_dir);

// The socket path for `-s VALUE`: VALUE itself when it contains '/', else DIR/VALUE.sock.
std::string resolve_socket(std::string_view value, std::string_view dir);

// The general usage (kHelp) or one verb's help, ending in a newline.
std::string help_text(Verb verb);

}  // namespace petrel::ctl

#include "vmm/config_checks.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <vector>

#include "vmm/base/unique_fd.h"

namespace petrel {
namespace {

template <typename T>
struct NamedValue {
  std::string_view name;
  T value;
};

constexpr std::array<NamedValue<SerialMode>, 4> kSerialModes{{
    {"stdio", SerialMode::kStdio},
    {"file", SerialMode::kFile},
    {"none", SerialMode::kNone},
    {"socket", SerialMode::kSocket},
}};
constexpr std::array<NamedValue<LogFormat>, 3> kLogFormats{{
    {"text", LogFormat::kText},
    {"json", LogFormat::kJson},
    {"journal", LogFormat::kJournal},
}};
constexpr std::array<NamedValue<PvmMode>, 2> kPvmModes{{
    {"auto", PvmMode::kAuto},
    {"emulated", PvmMode::kEmulated},
}};
constexpr std::array<NamedValue<SeccompMode>, 3> kSeccompModes{{
    {"on", SeccompMode::kOn},
    {"off", SeccompMode::kOff},
    {"log", SeccompMode::kLog},
}};
constexpr std::array<NamedValue<RebootAction>, 2> kRebootActions{{
    {"restart", RebootAction::kRestart},
    {"exit", RebootAction::kExit},
}};
// Duration units and their length in milliseconds; no unit means seconds.
constexpr std::array<NamedValue<uint64_t>, 5> kDurationUnits{{
    {"ms", 1},
    {"s", 1000},
    {"m", 60'000},
    {"h", 3'600'000},
    {"", 1000},
}};
constexpr std::array<std::string_view, 6> kLogLevels{"trace", "debug", "info",
                                                     "warn",  "error", "off"};

constexpr size_t kMaxDescribedLength = 40;

template <typename Names>
std::string expected_one_of(const Names& names, std::string_view got) {
  std::string out = "expected one of ";
  bool first = true;
  for (const auto& n : names) {
    if (!first) {
      out += ", ";
    }
    first = false;
    if constexpr (std::is_convertible_v<decltype(n), std::string_view>) {
      out += n;
    } else {
      out += n.name;
    }
  }
  out += ", got ";
  out += config_detail::json_quoted(got);
  return out;
}

template <typename T, size_t N>
Result<T> parse_named(std::string_view text, const std::array<NamedValue<T>, N>& table) {
  for (const auto& entry : table) {
    if (entry.name == text) {
      return entry.value;
    }
  }
  return Error(ErrorCode::kInvalidArgument, expected_one_of(table, text));
}

template <typename T, size_t N>
std::string_view name_of(T value, const std::array<NamedValue<T>, N>& table) {
  for (const auto& entry : table) {
    if (entry.value == value) {
      return entry.name;
    }
  }
  return "?";
}

// A failed system call on `path`: kNotFound when the path does not exist.
Error path_error(const std::filesystem::path& path, int err) {
  ErrorCode code =
      (err == ENOENT || err == ENOTDIR) ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument;
  return Error(code, path.string() + ": " + std::strerror(err), err);
}

// `path`'s directory exists (the current directory when `path` has none).
Result<void> check_parent_directory(const std::filesystem::path& path) {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) {
    return ok();  // the current directory
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return path_error(dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return path_error(dir, ENOTDIR);
  }
  return ok();
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string_view to_string(SerialMode mode) {
  return name_of(mode, kSerialModes);
}
std::string_view to_string(LogFormat format) {
  return name_of(format, kLogFormats);
}
std::string_view to_string(PvmMode mode) {
  return name_of(mode, kPvmModes);
}
std::string_view to_string(SeccompMode mode) {
  return name_of(mode, kSeccompModes);
}
std::string_view to_string(RebootAction action) {
  return name_of(action, kRebootActions);
}

namespace config_detail {

Result<void> check_name(std::string_view name) {
  bool valid = !name.empty() && name.size() <= kMaxNameLength;
  for (char ch : name) {
    bool allowed = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    valid = valid && allowed;
  }
  if (!valid) {
    return Error(ErrorCode::kInvalidArgument, "expected 1 to " + std::to_string(kMaxNameLength) +
                                                  " characters from A-Z a-z 0-9 . _ -, got " +
                                                  json_quoted(name));
  }
  return ok();
}

Result<void> check_input_file(const std::filesystem::path& path) {
  if (path.empty()) {
    return Error(ErrorCode::kInvalidArgument, "must not be empty");
  }
  // O_NONBLOCK: opening a FIFO must not hang; the file is only probed here.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) {
    return path_error(path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return path_error(path, errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument, path.string() + ": not a regular file");
  }
  return ok();
}

Result<void> check_disk_file(const std::filesystem::path& path, bool read_only) {
  if (path.empty()) {
    return Error(ErrorCode::kInvalidArgument, "must not be empty");
  }
  int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd.valid()) {
    int err = errno;
    if (!read_only && (err == EACCES || err == EROFS || err == EPERM)) {
      return Error(
          ErrorCode::kInvalidArgument,
          path.string() + ": " + std::strerror(err) + " (add readonly=on to use it read-only)",
          err);
    }
    return path_error(path, err);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return path_error(path, errno);
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument,
                 path.string() + ": not a regular file or block device");
  }
  return ok();
}

Result<void> check_cmdline(std::string_view cmdline) {
  if (cmdline.size() > kMaxCmdlineLength) {
    return Error(ErrorCode::kInvalidArgument, std::to_string(cmdline.size()) +
                                                  " bytes is longer than the maximum " +
                                                  std::to_string(kMaxCmdlineLength));
  }
  if (cmdline.find('\0') != std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument, "must not contain a NUL byte");
  }
  if (cmdline.find('\n') != std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument, "must not contain a newline");
  }
  return ok();
}

Result<void> check_memory(uint64_t bytes) {
  if (bytes < kMinMemoryBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 format_size(bytes) + " is below the minimum " + format_size(kMinMemoryBytes));
  }
  if (bytes > kMaxMemoryBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 format_size(bytes) + " is above the maximum " + format_size(kMaxMemoryBytes));
  }
  if (bytes % kMemoryAlignment != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 format_size(bytes) + " is not a multiple of " + format_size(kMemoryAlignment));
  }
  return ok();
}

Result<void> check_log_level(std::string_view level) {
  if (std::find(kLogLevels.begin(), kLogLevels.end(), level) == kLogLevels.end()) {
    return Error(ErrorCode::kInvalidArgument, expected_one_of(kLogLevels, level));
  }
  return ok();
}

Result<void> check_serial_file(const std::filesystem::path& path) {
  if (path.empty()) {
    return Error(ErrorCode::kInvalidArgument, "the file path must not be empty");
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      return Error(ErrorCode::kInvalidArgument, path.string() + ": is a directory");
    }
    return ok();
  }
  return check_parent_directory(path);
}

Result<void> check_socket_path_syntax(const std::filesystem::path& path) {
  const std::string& text = path.native();
  if (text.empty()) {
    return Error(ErrorCode::kInvalidArgument, "the socket path must not be empty");
  }
  if (text.find('\0') != std::string::npos) {
    return Error(ErrorCode::kInvalidArgument, "the socket path must not contain a NUL byte");
  }
  if (text.size() > kMaxSocketPathLength) {
    return Error(ErrorCode::kInvalidArgument, "the socket path is " + std::to_string(text.size()) +
                                                  " bytes; a Unix socket address holds at most " +
                                                  std::to_string(kMaxSocketPathLength));
  }
  return ok();
}

Result<void> check_listen_socket(const std::filesystem::path& path) {
  PETREL_TRY(check_socket_path_syntax(path));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error(ErrorCode::kInvalidArgument, path.string() + ": exists and is not a socket");
    }
    return ok();
  }
  if (errno != ENOENT) {
    return path_error(path, errno);
  }
  return check_parent_directory(path);
}

Result<void> check_serial_socket(const std::filesystem::path& path) {
  return check_listen_socket(path);
}

std::string shutdown_timeout_expectation() {
  return "expected an integer number of milliseconds from 1 to " +
         std::to_string(kMaxShutdownTimeoutMs);
}

Result<void> check_shutdown_timeout_ms(uint64_t ms) {
  if (ms < 1 || ms > kMaxShutdownTimeoutMs) {
    return Error(ErrorCode::kInvalidArgument, std::to_string(ms) + "ms is outside 1ms to " +
                                                  std::to_string(kMaxShutdownTimeoutMs) +
                                                  "ms (1h)");
  }
  return ok();
}

std::string vcpus_expectation() {
  return "expected an integer from " + std::to_string(kMinVcpus) + " to " +
         std::to_string(kMaxVcpus);
}

Result<uint32_t> parse_vcpus(std::string_view text) {
  uint32_t value = 0;
  bool valid = !text.empty() && text.size() <= 3;
  for (char ch : text) {
    valid = valid && ch >= '0' && ch <= '9';
    value = value * 10 + static_cast<uint32_t>(ch - '0');
  }
  if (!valid || value < kMinVcpus || value > kMaxVcpus) {
    return Error(ErrorCode::kInvalidArgument, vcpus_expectation() + ", got " + json_quoted(text));
  }
  return value;
}

Result<SerialMode> parse_serial_mode(std::string_view text) {
  return parse_named(text, kSerialModes);
}

Result<LogFormat> parse_log_format(std::string_view text) {
  return parse_named(text, kLogFormats);
}

Result<PvmMode> parse_pvm_mode(std::string_view text) {
  return parse_named(text, kPvmModes);
}

Result<SeccompMode> parse_seccomp_mode(std::string_view text) {
  return parse_named(text, kSeccompModes);
}

Result<RebootAction> parse_reboot_action(std::string_view text) {
  return parse_named(text, kRebootActions);
}

Result<uint64_t> parse_duration_ms(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  std::string_view unit_name = text.substr(digits);
  auto unit = std::find_if(kDurationUnits.begin(), kDurationUnits.end(),
                           [unit_name](const auto& u) { return u.name == unit_name; });
  if (digits == 0 || unit == kDurationUnits.end()) {
    return Error(ErrorCode::kInvalidArgument,
                 "invalid duration " + json_quoted(text) +
                     ": expected digits with a unit ms, s, m or h (plain digits are seconds), "
                     "e.g. 30s or 1500ms");
  }
  uint64_t value = 0;
  bool overflow = false;
  for (char ch : text.substr(0, digits)) {
    overflow = overflow || __builtin_mul_overflow(value, 10, &value) ||
               __builtin_add_overflow(value, static_cast<uint64_t>(ch - '0'), &value);
  }
  overflow = overflow || __builtin_mul_overflow(value, unit->value, &value);
  if (overflow) {
    return Error(ErrorCode::kInvalidArgument,
                 "invalid duration " + json_quoted(text) + ": too large");
  }
  return value;
}

Result<SerialConfig> parse_serial_spec(std::string_view text) {
  constexpr std::string_view kFilePrefix = "file:";
  constexpr std::string_view kSocketPrefix = "socket:";
  if (text == "stdio") {
    return SerialConfig{SerialMode::kStdio, {}};
  }
  if (text == "none") {
    return SerialConfig{SerialMode::kNone, {}};
  }
  if (text.starts_with(kFilePrefix)) {
    std::string_view path = text.substr(kFilePrefix.size());
    if (path.empty()) {
      return Error(ErrorCode::kInvalidArgument, "file: needs a path, e.g. file:/tmp/console.log");
    }
    if (path.find('\0') != std::string_view::npos) {
      return Error(ErrorCode::kInvalidArgument, "the file path must not contain a NUL byte");
    }
    return SerialConfig{SerialMode::kFile, std::filesystem::path(path)};
  }
  if (text.starts_with(kSocketPrefix)) {
    std::filesystem::path path(text.substr(kSocketPrefix.size()));
    if (path.empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "socket: needs a path, e.g. socket:/tmp/console.sock");
    }
    PETREL_TRY(check_socket_path_syntax(path));
    return SerialConfig{SerialMode::kSocket, std::move(path)};
  }
  return Error(ErrorCode::kInvalidArgument,
               "expected stdio, none, file:PATH or socket:PATH, got " + json_quoted(text));
}

std::string describe(const nlohmann::json& value) {
  std::string out = value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (out.size() > kMaxDescribedLength) {
    out.resize(kMaxDescribedLength);
    out += "...";
  }
  return out;
}

std::string json_quoted(std::string_view text) {
  return describe(nlohmann::json(std::string(text)));
}

Error with_prefix(std::string_view prefix, const Error& error) {
  std::string message(prefix);
  message += ": ";
  message += error.message();
  return Error(error.code(), std::move(message), error.sys_errno());
}

Error field_error(std::string_view field, const Error& error) {
  return with_prefix("config: field \"" + std::string(field) + "\"", error);
}

Error field_error(std::string_view field, std::string message) {
  return field_error(field, Error(ErrorCode::kInvalidArgument, std::move(message)));
}

Result<void> in_field(std::string_view field, Result<void> result) {
  if (!result.ok()) {
    return field_error(field, result.error());
  }
  return ok();
}

std::string_view closest_match(std::string_view word,
                               std::span<const std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = 3;  // more than two edits is not a typo
  for (std::string_view candidate : candidates) {
    // A unit suffix left out ("shutdown_timeout" for "shutdown_timeout_ms") is a typo too.
    if (word.size() >= 4 && candidate.starts_with(word) && best.empty()) {
      best = candidate;
    }
    size_t d = edit_distance(word, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace config_detail
}  // namespace petrel

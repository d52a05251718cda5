// Value parsers and checks shared by the JSON config parser, validate_config and the command
// line. Errors carry only the message body ("expected ..., got ..."); the caller prefixes the
// config field or the flag (with_prefix).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "vmm/base/result.h"
#include "vmm/vm_config.h"

namespace petrel::config_detail {

Result<void> check_name(std::string_view name);
// An input file petrel reads (kernel, initrd): kNotFound when it does not exist;
// kInvalidArgument when the path is empty or it is not a readable regular file.
Result<void> check_input_file(const std::filesystem::path& path);
Result<void> check_cmdline(std::string_view cmdline);
// A disk image: an existing regular file or block device, readable, and writable unless
// `read_only`.
Result<void> check_disk_file(const std::filesystem::path& path, bool read_only);
Result<void> check_memory(uint64_t bytes);
Result<void> check_log_level(std::string_view level);
// A path a serial log can be created at: not a directory, and its directory exists.
Result<void> check_serial_file(const std::filesystem::path& path);
// Syntax of a serial socket path: not empty, no NUL, at most kMaxSocketPathLength bytes.
Result<void> check_socket_path_syntax(const std::filesystem::path& path);
// A path a listening Unix socket (the serial console's, the API's) can be created at:
// check_socket_path_syntax, its directory exists, and nothing but a (stale) socket is there. A
// socket already at the path is accepted here; petrel removes it at start unless a process is
// listening on it (vmm/base/unix_listener.h).
Result<void> check_listen_socket(const std::filesystem::path& path);
// check_listen_socket for serial.path.
Result<void> check_serial_socket(const std::filesystem::path& path);
// shutdown_timeout_ms: 1..kMaxShutdownTimeoutMs; `ms` as parsed, which may be out of range.
Result<void> check_shutdown_timeout_ms(uint64_t ms);
// "expected an integer number of milliseconds from 1 to 3600000"
std::string shutdown_timeout_expectation();

// "expected an integer from 1 to 254"
std::string vcpus_expectation();
Result<uint32_t> parse_vcpus(std::string_view text);
Result<SerialMode> parse_serial_mode(std::string_view text);
Result<LogFormat> parse_log_format(std::string_view text);
Result<PvmMode> parse_pvm_mode(std::string_view text);
Result<SeccompMode> parse_seccomp_mode(std::string_view text);  // on, off, log
Result<RebootAction> parse_reboot_action(std::string_view text);
// A duration in milliseconds: decimal digits with a unit "ms", "s", "m" or "h" (lower case), or
// plain digits meaning seconds: "1500ms", "30s", "2m", "1h", "30". Signs, spaces, fractions and
// values above UINT64_MAX ms are refused with kInvalidArgument; the range is the caller's check.
Result<uint64_t> parse_duration_ms(std::string_view text);
// The shorthand "stdio", "none", "file:PATH" or "socket:PATH" (the --serial flag and the JSON
// string form). Syntax only (check_socket_path_syntax for a socket): a path is not checked
// against the file system (check_serial_file, check_serial_socket).
Result<SerialConfig> parse_serial_spec(std::string_view text);

// A JSON value rendered for "got ..." in messages: compact, ASCII, cut after ~40 characters.
std::string describe(const nlohmann::json& value);
// `text` as a quoted JSON string, shortened as by describe.
std::string json_quoted(std::string_view text);

// `error` with its message replaced by "<prefix>: <message>"; code and errno are kept.
Error with_prefix(std::string_view prefix, const Error& error);

// Config-file errors: "config: field \"<field>\": <message>", field as in "serial.mode".
Error field_error(std::string_view field, const Error& error);
Error field_error(std::string_view field, std::string message);  // kInvalidArgument
// `result` with its error, if any, passed through field_error.
Result<void> in_field(std::string_view field, Result<void> result);

// The candidate within a small edit distance of `word`, or "" when none is close enough to be
// a likely typo.
std::string_view closest_match(std::string_view word, std::span<const std::string_view> candidates);

}  // namespace petrel::config_detail

#include "vmm/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace petrel {

namespace {

std::optional<unsigned> as_number(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

Result<passwd> find_user(std::string_view name, std::vector<char>& buf, std::string& canonical) {
  passwd pw{};
  passwd* found = nullptr;
  const std::string key(name);
  const auto id = as_number(name);
  const int rc = id ? ::getpwuid_r(*id, &pw, buf.data(), buf.size(), &found)
                    : ::getpwnam_r(key.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("no user '{}'", name));
  }
  canonical = pw.pw_name;
  return pw;
}

Result<gid_t> find_group(std::string_view name) {
  if (auto id = as_number(name)) {
    return static_cast<gid_t>(*id);
  }
  std::vector<char> buf(16384);
  group gr{};
  group* found = nullptr;
  const std::string key(name);
  if (::getgrnam_r(key.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("no group '{}'", name));
  }
  return gr.gr_gid;
}

}  // namespace

Result<RunAs> resolve_run_as(std::string_view spec) {
  const size_t colon = spec.find(':');
  const std::string_view user = spec.substr(0, colon);
  if (user.empty() || (colon != std::string_view::npos && colon + 1 == spec.size())) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("expected USER or USER:GROUP, got '{}'", spec));
  }
  std::vector<char> buf(16384);
  RunAs out;
  PETREL_TRY_ASSIGN(passwd pw, find_user(user, buf, out.user));
  out.uid = pw.pw_uid;
  out.gid = pw.pw_gid;
  if (colon != std::string_view::npos) {
    PETREL_TRY_ASSIGN(out.gid, find_group(spec.substr(colon + 1)));
  }
  return out;
}

Result<void> drop_privileges(const RunAs& who, const std::filesystem::path& owned) {
  if (::geteuid() != 0) {
    return Error(ErrorCode::kState,
                 fmt::format("--user {}: petrel is not running as root (uid {}), so there is "
                             "nothing to drop; leave --user out",
                             who.user, ::geteuid()));
  }
  if (!owned.empty() && ::lchown(owned.c_str(), who.uid, who.gid) != 0) {
    return Error(ErrorCode::kIo, fmt::format("chown {} to {}", owned.string(), who.user), errno);
  }
  // Supplementary groups first (needs root), then the group, then the user (no way back).
  if (::initgroups(who.user.c_str(), who.gid) != 0) {
    return Error(ErrorCode::kIo, fmt::format("initgroups for {}", who.user), errno);
  }
  if (::setresgid(who.gid, who.gid, who.gid) != 0) {
    return Error(ErrorCode::kIo, fmt::format("setresgid {}", who.gid), errno);
  }
  if (::setresuid(who.uid, who.uid, who.uid) != 0) {
    return Error(ErrorCode::kIo, fmt::format("setresuid {}", who.uid), errno);
  }
  // The raw call tries on this thread only: glibc's setuid() would make every thread try
  // (its set*id broadcast), and setuid is on no seccomp list.
  if (who.uid != 0 && ::syscall(SYS_setuid, 0) == 0) {
    return Error(ErrorCode::kInternal, "still able to become root after dropping privileges");
  }
  spdlog::info("running as user {} (uid {}, gid {})", who.user, who.uid, who.gid);
  return {};
}

}  // namespace petrel

// Dropping root after set-up (`--user USER[:GROUP]`): petrel opens /dev/kvm, the disk images,
// the TAPs and its sockets as root, then runs the guest as USER (its primary group, or GROUP,
// plus USER's supplementary groups from the group database). setresgid/setresuid set the real,
// effective and saved ids, so there is no way back; glibc applies them to every thread.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "vmm/base/result.h"

namespace petrel {

struct RunAs {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;

  bool operator==(const RunAs&) const = default;
};

// "USER" or "USER:GROUP", names or numeric ids, looked up now (getpwnam_r/getgrnam_r).
// kInvalidArgument when either does not exist or the text is malformed.
Result<RunAs> resolve_run_as(std::string_view spec);

// Becomes `who`; first hands `owned` (the API socket, when petrel made it) to it so that its
// operators can reach the API. kState when petrel is not root (nothing to drop: say so
// instead of running with the wrong ids), kIo when a call fails; on success getuid() ==
// who.uid and setuid(0) would fail.
Result<void> drop_privileges(const RunAs& who, const std::filesystem::path& owned);

}  // namespace petrel

// A listening Unix stream socket at a path, shared by the console socket and the API socket.
// Policy: the path holds nothing, or a socket nobody listens on (removed as stale); a live
// listener or any other file is refused. The socket file has mode 0600 from the moment it
// exists (umask around bind: call while the VM is being set up, before other threads create
// files). The fd is non-blocking and close-on-exec. The caller unlinks the path when done.
#pragma once

#include <filesystem>
#include <string_view>

#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

// `label` names the socket in errors and logs ("api socket", "console socket").
Result<UniqueFd> listen_unix_socket(const std::filesystem::path& path, std::string_view label,
                                    int backlog);

}  // namespace petrel

// The API socket handed over by systemd socket activation (sd_listen_fds(3),
// systemd.socket(5)): a petrel@.socket unit listens on /run/petrel/NAME.sock and starts the
// service with the listening socket as fd 3 (LISTEN_FDS=1, LISTEN_PID = petrel's pid).
#pragma once

#include <optional>

#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel {

// nullopt when systemd passed no socket (LISTEN_FDS unset, or meant for another process).
// Errors (kInvalidArgument) when it passed more than one fd, or one that is not a listening
// Unix stream socket. The fd returned is non-blocking and close-on-exec; the LISTEN_*
// variables are removed from the environment. Call once, on the main thread, before other
// threads run (it changes the environment).
Result<std::optional<UniqueFd>> take_activated_socket();

}  // namespace petrel

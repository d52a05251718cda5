// Logging set-up: spdlog to stderr (journald picks it up under systemd), as plain text or as
// one JSON object per line. The guest console never goes through here.
#pragma once

#include <string_view>

#include "vmm/base/result.h"

namespace petrel {

// `level`: trace|debug|info|warn|error|off. Call once, from main, before other threads run.
Result<void> setup_logging(std::string_view level, bool json);

}  // namespace petrel

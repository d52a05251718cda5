// Logging set-up: spdlog to stderr (journald picks it up under systemd), never coloured. The
// guest console never goes through here.
#pragma once

#include <string_view>

#include "vmm/base/result.h"

namespace petrel {

enum class LogStyle {
  kText,     // "2026-11-22T10:00:00.123456 info petrel: message"
  kJson,     // {"ts":...,"level":...,"thread":...,"msg":...} per line
  kJournal,  // "<6>petrel: message": the sd-daemon(3) priority prefix journald reads from a
             // stream, no timestamp (the journal has its own)
};

// True when stderr is the stream systemd connected to the journal (JOURNAL_STREAM holds
// stderr's "device:inode", systemd.exec(5)).
bool stderr_is_journal();

// `level`: trace|debug|info|warn|error|off. Call once, from main, before other threads run.
Result<void> setup_logging(std::string_view level, LogStyle style);

}  // namespace petrel

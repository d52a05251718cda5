// open_disk: opens and locks a disk image and picks its I/O engine (BlockConfig::engine):
// "auto" probes io_uring (io_uring_queue_init plus the opcodes used) and falls back to the
// synchronous engine with a log line; "uring" fails when io_uring does not work; "sync"
// never tries it.
#pragma once

#include <memory>

#include "virtio/block_config.h"
#include "virtio/disk_backend.h"
#include "vmm/base/result.h"

namespace petrel::virtio {

// `max_in_flight`: how many ops the caller may have outstanding (the queue size).
Result<std::unique_ptr<DiskBackend>> open_disk(const BlockConfig& config, unsigned max_in_flight);

}  // namespace petrel::virtio

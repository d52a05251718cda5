// BlockConfig: what the VMM's configuration says about one virtio-blk disk. Plain data; the
// JSON/CLI parsing lives above src/virtio.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace petrel::virtio {

// Which disk I/O engine serves the requests.
enum class DiskEngine {
  kAuto,   // io_uring when the kernel allows it (probed at open), else sync with a log line
  kUring,  // io_uring or fail
  kSync,   // preadv/pwritev on the event-loop thread
};

std::string_view to_string(DiskEngine engine);
// "auto" | "uring" | "io_uring" | "sync"; nullopt for anything else.
std::optional<DiskEngine> parse_disk_engine(std::string_view text);

struct BlockConfig {
  std::filesystem::path path;  // raw image file or block device
  bool read_only = false;      // O_RDONLY + flock(LOCK_SH), VIRTIO_BLK_F_RO offered
  // GET_ID answer (virtio 1.2 5.2.6: at most 20 bytes, NUL-padded). Empty: derived from a
  // hash of the image's absolute path, stable across runs.
  std::string serial;
  DiskEngine engine = DiskEngine::kAuto;
  // O_DIRECT: bypasses the host page cache. Guest buffers must then be aligned to the
  // host's logical block size, or those requests fail with IOERR.
  bool direct = false;
};

}  // namespace petrel::virtio

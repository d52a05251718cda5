#include "virtio/disk_open.h"

#include <spdlog/spdlog.h>

#include "virtio/disk_file.h"
#include "virtio/disk_file_sync.h"
#include "virtio/disk_file_uring.h"

namespace petrel::virtio {

std::string_view to_string(DiskEngine engine) {
  switch (engine) {
    case DiskEngine::kAuto:
      return "auto";
    case DiskEngine::kUring:
      return "uring";
    case DiskEngine::kSync:
      return "sync";
  }
  return "unknown";
}

std::optional<DiskEngine> parse_disk_engine(std::string_view text) {
  if (text == "auto") {
    return DiskEngine::kAuto;
  }
  if (text == "uring" || text == "io_uring") {
    return DiskEngine::kUring;
  }
  if (text == "sync") {
    return DiskEngine::kSync;
  }
  return std::nullopt;
}

Result<std::unique_ptr<DiskBackend>> open_disk(const BlockConfig& config, unsigned max_in_flight) {
  PETREL_TRY_ASSIGN(DiskFile file, DiskFile::open(config.path, config.read_only, config.direct));
  if (config.engine == DiskEngine::kSync) {
    return std::unique_ptr<DiskBackend>(std::make_unique<DiskFileSync>(std::move(file)));
  }
  if (auto probe = DiskFileUring::probe(max_in_flight); !probe.ok()) {
    if (config.engine == DiskEngine::kUring) {
      return std::move(probe).error().context(
          fmt::format("disk {}: the io_uring engine was asked for", config.path.string()));
    }
    spdlog::info("disk {}: io_uring unavailable ({}); using the synchronous engine",
                 config.path.string(), probe.error().to_string());
    return std::unique_ptr<DiskBackend>(std::make_unique<DiskFileSync>(std::move(file)));
  }
  PETREL_TRY_ASSIGN(auto uring, DiskFileUring::create(std::move(file), max_in_flight));
  return std::unique_ptr<DiskBackend>(std::move(uring));
}

}  // namespace petrel::virtio

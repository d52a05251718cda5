// DiskFileSync: the synchronous disk engine. commit() performs the queued operations one
// after the other with preadv/pwritev2/fdatasync/fallocate on the event-loop thread and
// then delivers their completions, so a slow disk stalls the loop for that long: it is the
// fallback for hosts where io_uring is unavailable, and the reference for tests.
#pragma once

#include <vector>

#include "virtio/disk_backend.h"
#include "virtio/disk_file.h"

namespace petrel::virtio {

class DiskFileSync final : public DiskBackend {
 public:
  explicit DiskFileSync(DiskFile file) : file_(std::move(file)) {}

  std::string_view engine_name() const override { return "sync"; }
  const DiskFile* file() const override { return &file_; }
  uint64_t size() const override { return file_.size(); }
  bool read_only() const override { return file_.read_only(); }

  Result<void> attach(boost::asio::io_context& io, DiskCompletionHandler handler) override;
  void detach() override;
  Result<void> submit(DiskOp op, uint64_t tag) override;
  void commit() override;
  void drain() override { commit(); }
  size_t in_flight() const override { return queued_.size(); }

  // Performs one op; 0 or an errno. Shared with the uring engine's fallbacks.
  static int perform(const DiskFile& file, const DiskOp& op);

 private:
  struct Queued {
    DiskOp op;
    uint64_t tag;
  };

  DiskFile file_;
  DiskCompletionHandler handler_;
  std::vector<Queued> queued_;
  std::vector<DiskCompletion> done_;
};

}  // namespace petrel::virtio

#include "virtio/disk_file_sync.h"

#include <cerrno>
#include <utility>

namespace petrel::virtio {

Result<void> DiskFileSync::attach(boost::asio::io_context& /*io*/, DiskCompletionHandler handler) {
  handler_ = std::move(handler);
  return {};
}

Result<void> DiskFileSync::submit(DiskOp op, uint64_t tag) {
  if (op.iov.size() > kMaxIov) {
    return Error(ErrorCode::kInvalidArgument, "disk op with more than IOV_MAX segments");
  }
  queued_.push_back(Queued{std::move(op), tag});
  return {};
}

int DiskFileSync::perform(const DiskFile& file, const DiskOp& op) {
  bool writes = op.kind != DiskOpKind::kRead && op.kind != DiskOpKind::kFlush;
  if (writes && file.read_only()) {
    return EROFS;
  }
  switch (op.kind) {
    case DiskOpKind::kRead:
      return file.read(op.iov, op.offset);
    case DiskOpKind::kWrite:
      return file.write(op.iov, op.offset, op.fua);
    case DiskOpKind::kFlush:
      return file.flush();
    case DiskOpKind::kDiscard:
      return file.discard(op.offset, op.length);
    case DiskOpKind::kWriteZeroes:
      return file.write_zeroes(op.offset, op.length, op.unmap);
  }
  return EINVAL;
}

void DiskFileSync::commit() {
  if (queued_.empty()) {
    return;
  }
  std::vector<Queued> batch;
  batch.swap(queued_);
  done_.clear();
  for (const auto& q : batch) {
    done_.push_back(DiskCompletion{q.tag, perform(file_, q.op)});
  }
  if (handler_) {
    handler_(done_);
  }
}

void DiskFileSync::detach() {
  handler_ = nullptr;
}

}  // namespace petrel::virtio

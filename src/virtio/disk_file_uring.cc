#include "virtio/disk_file_uring.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

namespace petrel::virtio {
namespace {

bool fs_refused(int err) {
  return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == EINVAL;
}

Result<void> check_opcodes(io_uring* ring) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (probe == nullptr) {
    return Error(ErrorCode::kUnsupported, "io_uring: IORING_REGISTER_PROBE failed");
  }
  bool all = io_uring_opcode_supported(probe, IORING_OP_READV) &&
             io_uring_opcode_supported(probe, IORING_OP_WRITEV) &&
             io_uring_opcode_supported(probe, IORING_OP_FSYNC) &&
             io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
  io_uring_free_probe(probe);
  if (!all) {
    return Error(ErrorCode::kUnsupported,
                 "io_uring lacks READV, WRITEV, FSYNC or FALLOCATE (kernel older than 5.6)");
  }
  return {};
}

}  // namespace

DiskFileUring::DiskFileUring(Passkey /*key*/, DiskFile file, EventFd eventfd)
    : file_(std::move(file)),
      eventfd_(std::move(eventfd)),
      self_(std::make_shared<DiskFileUring*>(this)) {}

Result<std::unique_ptr<DiskFileUring>> DiskFileUring::create(DiskFile file, unsigned entries) {
  PETREL_TRY_ASSIGN(EventFd efd, EventFd::create(EFD_NONBLOCK));
  auto self = std::make_unique<DiskFileUring>(Passkey{}, std::move(file), std::move(efd));
  int rc = io_uring_queue_init(entries, &self->ring_, 0);
  if (rc < 0) {
    return Error::from_errno("io_uring_queue_init", -rc);
  }
  self->ring_ready_ = true;
  PETREL_TRY(check_opcodes(&self->ring_));
  rc = io_uring_register_eventfd(&self->ring_, self->eventfd_.fd());
  if (rc < 0) {
    return Error::from_errno("io_uring_register_eventfd", -rc);
  }
  return self;
}

Result<void> DiskFileUring::probe(unsigned entries) {
  io_uring ring{};
  int rc = io_uring_queue_init(entries, &ring, 0);
  if (rc < 0) {
    return Error::from_errno("io_uring_queue_init", -rc);
  }
  auto result = check_opcodes(&ring);
  io_uring_queue_exit(&ring);
  return result;
}

DiskFileUring::~DiskFileUring() {
  if (ring_ready_) {
    drain();
    io_uring_queue_exit(&ring_);
  }
}

Result<void> DiskFileUring::attach(boost::asio::io_context& io, DiskCompletionHandler handler) {
  handler_ = std::move(handler);
  if (watch_ && &watch_->get_executor().context() == &io) {
    return {};
  }
  int fd = ::fcntl(eventfd_.fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    return Error::from_errno("dup io_uring eventfd", errno);
  }
  watch_.emplace(io, fd);
  armed_ = false;
  arm();
  return {};
}

void DiskFileUring::detach() {
  watch_.reset();  // closes the dup: a pending wait completes with operation_aborted
  armed_ = false;
  handler_ = nullptr;
}

void DiskFileUring::arm() {
  if (armed_ || !watch_) {
    return;
  }
  armed_ = true;
  std::weak_ptr<DiskFileUring*> weak = self_;
  watch_->async_wait(boost::asio::posix::descriptor_base::wait_read,
                     [weak](const boost::system::error_code& ec) {
                       auto self = weak.lock();
                       if (!self || ec == boost::asio::error::operation_aborted) {
                         return;
                       }
                       DiskFileUring& backend = **self;
                       backend.armed_ = false;
                       (void)backend.eventfd_.consume();
                       backend.reap();
                       backend.arm();
                     });
}

Result<void> DiskFileUring::submit(DiskOp op, uint64_t tag) {
  if (op.iov.size() > kMaxIov) {
    return Error(ErrorCode::kInvalidArgument, "disk op with more than IOV_MAX segments");
  }
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slots_[slot] = Op{std::move(op), tag, 0};
  if (!prepare(slot)) {
    slots_[slot].reset();
    free_slots_.push_back(slot);
    return Error(ErrorCode::kIo, "io_uring submission queue full");
  }
  ++in_flight_;
  return {};
}

bool DiskFileUring::prepare(uint32_t slot) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      return false;
    }
  }
  Op& o = *slots_[slot];
  const DiskOp& op = o.op;
  switch (op.kind) {
    case DiskOpKind::kRead:
      io_uring_prep_readv(sqe, file_.fd(), op.iov.data(), static_cast<unsigned>(op.iov.size()),
                          op.offset + o.done);
      break;
    case DiskOpKind::kWrite:
      io_uring_prep_writev2(sqe, file_.fd(), op.iov.data(), static_cast<unsigned>(op.iov.size()),
                            op.offset + o.done, op.fua ? RWF_DSYNC : 0);
      break;
    case DiskOpKind::kFlush:
      io_uring_prep_fsync(sqe, file_.fd(), IORING_FSYNC_DATASYNC);
      break;
    case DiskOpKind::kDiscard:
      io_uring_prep_fallocate(sqe, file_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(op.offset), static_cast<off_t>(op.length));
      break;
    case DiskOpKind::kWriteZeroes:
      io_uring_prep_fallocate(
          sqe, file_.fd(),
          (op.unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE,
          static_cast<off_t>(op.offset), static_cast<off_t>(op.length));
      break;
  }
  io_uring_sqe_set_data64(sqe, slot);
  return true;
}

void DiskFileUring::commit() {
  if (io_uring_sq_ready(&ring_) > 0) {
    int rc = io_uring_submit(&ring_);
    if (rc < 0) {
      spdlog::warn("disk {}: io_uring_submit: {}", file_.path().string(), std::strerror(-rc));
    }
  }
}

void DiskFileUring::finish(uint32_t slot, int error) {
  done_.push_back(DiskCompletion{slots_[slot]->tag, error});
  slots_[slot].reset();
  free_slots_.push_back(slot);
  --in_flight_;
}

void DiskFileUring::on_cqe(uint32_t slot, int res) {
  if (slot >= slots_.size() || !slots_[slot]) {
    spdlog::error("disk {}: io_uring completion for unknown slot {}", file_.path().string(), slot);
    return;
  }
  Op& o = *slots_[slot];
  DiskOp& op = o.op;
  bool transfer = op.kind == DiskOpKind::kRead || op.kind == DiskOpKind::kWrite;
  if (res < 0) {
    int err = -res;
    if (op.kind == DiskOpKind::kDiscard && fs_refused(err)) {
      err = 0;  // a discard is a hint (virtio 1.2 5.2.6.2)
    } else if (op.kind == DiskOpKind::kWriteZeroes && fs_refused(err)) {
      err = file_.write_zeroes(op.offset, op.length, false);  // rare: synchronous fallback
    } else if (err == EAGAIN || err == EINTR) {
      if (prepare(slot)) {
        return;
      }
    }
    finish(slot, err);
    return;
  }
  if (!transfer) {
    finish(slot, 0);
    return;
  }
  if (res == 0) {
    finish(slot, EIO);  // end of file: the image shrank under us
    return;
  }
  o.done += static_cast<uint64_t>(res);
  if (o.done >= op.length) {
    finish(slot, 0);
    return;
  }
  // Short transfer: drop what was done from the iovecs and go again for the rest.
  uint64_t skip = static_cast<uint64_t>(res);
  size_t drop = 0;
  while (drop < op.iov.size() && skip >= op.iov[drop].iov_len) {
    skip -= op.iov[drop].iov_len;
    ++drop;
  }
  op.iov.erase(op.iov.begin(), op.iov.begin() + static_cast<ptrdiff_t>(drop));
  if (!op.iov.empty() && skip > 0) {
    op.iov[0].iov_base = static_cast<std::byte*>(op.iov[0].iov_base) + skip;
    op.iov[0].iov_len -= skip;
  }
  if (!prepare(slot)) {
    finish(slot, EAGAIN);
  }
}

void DiskFileUring::reap() {
  done_.clear();
  while (io_uring_cq_ready(&ring_) > 0) {
    unsigned head;
    unsigned count = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      on_cqe(static_cast<uint32_t>(io_uring_cqe_get_data64(cqe)), cqe->res);
      ++count;
    }
    io_uring_cq_advance(&ring_, count);
    commit();  // resubmissions of short transfers
  }
  if (!done_.empty() && handler_) {
    std::vector<DiskCompletion> batch;
    batch.swap(done_);
    handler_(batch);
  }
  done_.clear();
}

void DiskFileUring::drain() {
  while (in_flight_ > 0) {
    commit();
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc < 0 && rc != -EINTR) {
      spdlog::error("disk {}: io_uring_wait_cqe while draining: {}", file_.path().string(),
                    std::strerror(-rc));
      return;
    }
    reap();
  }
}

}  // namespace petrel::virtio

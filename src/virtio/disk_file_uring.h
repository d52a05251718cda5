// DiskFileUring: the io_uring disk engine (liburing). Reads and writes go straight between
// the image and guest RAM (the DiskOp's iovecs point into it: zero-copy); flush is
// IORING_OP_FSYNC with IORING_FSYNC_DATASYNC; discard and write-zeroes are
// IORING_OP_FALLOCATE, with the synchronous fallback of DiskFile when the file system
// refuses. Many ops are in flight at once; the kernel posts completions, which signal an
// eventfd registered with io_uring_register_eventfd; the event loop watches that eventfd
// (boost::asio::posix::stream_descriptor) and reaps the completion queue on its thread.
// A short read/write is resubmitted for the rest.
//
// Thread affinity: the event-loop thread only (see DiskBackend). Lifetime: the io_context
// given to attach() must outlive this object; destruction drains every op in flight.
#pragma once

#include <liburing.h>

#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "virtio/disk_backend.h"
#include "virtio/disk_file.h"
#include "vmm/base/event_fd.h"

namespace petrel::virtio {

class DiskFileUring final : public DiskBackend {
 public:
  // Fails when the kernel refuses io_uring (ENOSYS, EPERM under a seccomp filter or
  // kernel.io_uring_disabled) or lacks one of the opcodes used here. `entries`: submission
  // queue size, at least the number of ops that can be in flight (the queue size).
  static Result<std::unique_ptr<DiskFileUring>> create(DiskFile file, unsigned entries);
  // Whether create() would get a working ring (sets one up and tears it down).
  static Result<void> probe(unsigned entries);
  struct Passkey {
   private:
    Passkey() = default;
    friend class DiskFileUring;
  };
  DiskFileUring(Passkey, DiskFile file, EventFd eventfd);
  ~DiskFileUring() override;
  DiskFileUring(const DiskFileUring&) = delete;
  DiskFileUring& operator=(const DiskFileUring&) = delete;

  std::string_view engine_name() const override { return "io_uring"; }
  const DiskFile* file() const override { return &file_; }
  uint64_t size() const override { return file_.size(); }
  bool read_only() const override { return file_.read_only(); }

  Result<void> attach(boost::asio::io_context& io, DiskCompletionHandler handler) override;
  void detach() override;
  Result<void> submit(DiskOp op, uint64_t tag) override;
  void commit() override;
  void drain() override;
  size_t in_flight() const override { return in_flight_; }

 private:
  struct Op {
    DiskOp op;
    uint64_t tag = 0;
    uint64_t done = 0;  // bytes transferred so far (kRead/kWrite)
  };

  // Puts slot `slot`'s (remaining) op into an SQE; false when the SQ stays full.
  bool prepare(uint32_t slot);
  // Handles one CQE; true when the op is finished (its completion is in done_).
  void on_cqe(uint32_t slot, int res);
  void finish(uint32_t slot, int error);
  // Processes every CQE now in the completion queue and delivers the completions.
  void reap();
  void arm();

  DiskFile file_;
  io_uring ring_{};
  bool ring_ready_ = false;
  EventFd eventfd_;
  std::optional<boost::asio::posix::stream_descriptor> watch_;
  DiskCompletionHandler handler_;
  std::vector<std::optional<Op>> slots_;  // index = SQE user_data
  std::vector<uint32_t> free_slots_;
  size_t in_flight_ = 0;  // ops submitted or prepared and not yet completed
  bool armed_ = false;
  std::vector<DiskCompletion> done_;
  // Outlives nothing: the eventfd wait handler holds a weak_ptr to know this still exists.
  std::shared_ptr<DiskFileUring*> self_;
};

}  // namespace petrel::virtio

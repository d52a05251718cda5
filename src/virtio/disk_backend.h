// DiskBackend: the storage behind a virtio-blk device (virtio 1.2 section 5.2). The device
// turns validated guest requests into DiskOps; the backend performs them and reports each
// completion, tagged, on the event-loop thread.
//
// Thread affinity: every method is called on the VMM event-loop thread (the one running
// the io_context given to attach()), and the completion handler runs there too.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "vmm/base/result.h"

namespace petrel::virtio {

class DiskFile;

enum class DiskOpKind {
  kRead,         // preadv into iov
  kWrite,        // pwritev from iov
  kFlush,        // fdatasync: everything completed before it is durable
  kDiscard,      // fallocate(PUNCH_HOLE | KEEP_SIZE); the range reads back as zeros
  kWriteZeroes,  // fallocate(ZERO_RANGE), or PUNCH_HOLE with `unmap`; writes zeros if refused
};

struct DiskOp {
  DiskOpKind kind = DiskOpKind::kRead;
  uint64_t offset = 0;  // bytes into the image; the caller checked offset + length <= size()
  uint64_t length = 0;  // bytes; for kRead/kWrite the sum of the iov lengths
  // kRead/kWrite: host memory (guest RAM, zero-copy) that must stay mapped and untouched
  // by the caller until the completion arrives. At most kMaxIov entries.
  std::vector<iovec> iov;
  bool unmap = false;  // kWriteZeroes: the device may deallocate the range
  bool fua = false;    // kWrite: durable before completion (RWF_DSYNC)
};

struct DiskCompletion {
  uint64_t tag = 0;  // as given to submit()
  int error = 0;     // 0, or the errno of the failed operation (a short transfer is EIO)
};

// Receives completions in batches. It must not call commit() or drain().
using DiskCompletionHandler = std::function<void(std::span<const DiskCompletion>)>;

class DiskBackend {
 public:
  static constexpr size_t kMaxIov = 1024;  // IOV_MAX

  virtual ~DiskBackend() = default;

  virtual std::string_view engine_name() const = 0;
  virtual uint64_t size() const = 0;  // bytes
  virtual bool read_only() const = 0;

  // Where completions go. Called on activation; may be called again (with the same or
  // another io_context) after drain().
  virtual Result<void> attach(boost::asio::io_context& io, DiskCompletionHandler handler) = 0;
  // Queues `op`; its completion reaches the handler with `tag`, never from inside submit().
  // An error means the op was not queued and no completion will come.
  virtual Result<void> submit(DiskOp op, uint64_t tag) = 0;
  // Starts every queued op (one io_uring_submit per batch). The sync engine performs them
  // here and delivers their completions before returning.
  virtual void commit() = 0;
  // Blocks until no op is queued or in flight; their completions are delivered to the
  // handler before it returns. Afterwards no guest memory is touched by the backend.
  virtual void drain() = 0;
  // After drain(): stops watching for completions (no wait stays armed on the io_context,
  // so the loop can finish) and forgets the handler. attach() starts again. Loop thread.
  virtual void detach() = 0;
  virtual size_t in_flight() const = 0;
  // The image file (its lock is handed over during a migration, DiskFile::set_locked);
  // null for a backend without one (tests).
  virtual const DiskFile* file() const { return nullptr; }
};

}  // namespace petrel::virtio

// DiskFile: an opened, locked raw disk image (a regular file or a block device) and the
// synchronous operations on it that both disk engines share.
//
// Locking: flock(LOCK_EX), or LOCK_SH when read-only, non-blocking, so that a second
// petrel (or anything else that flocks, e.g. QEMU) cannot use the same image for writing
// at the same time; a conflict is a clear error at open time.
//
// Thread affinity: none of its own; the owning backend calls it from the event-loop thread.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <filesystem>
#include <span>

#include "vmm/base/result.h"
#include "vmm/base/unique_fd.h"

namespace petrel::virtio {

class DiskFile {
 public:
  // O_CLOEXEC, O_RDWR or O_RDONLY, O_DIRECT if asked.
  static Result<DiskFile> open(const std::filesystem::path& path, bool read_only, bool direct);

  int fd() const { return fd_.get(); }
  uint64_t size() const { return size_; }  // bytes
  bool read_only() const { return read_only_; }
  const std::filesystem::path& path() const { return path_; }

  // Each returns 0 or an errno. The transfers loop over short counts and EINTR; reading
  // past the end of the file is EIO.
  int read(std::span<const iovec> iov, uint64_t offset) const;
  int write(std::span<const iovec> iov, uint64_t offset, bool dsync) const;
  int flush() const;  // fdatasync
  // Hands the image's flock to another process (a migration's destination on this host):
  // flushes, then releases the lock (false), or takes it again (true; kState when the
  // other process holds it now). Read-only images keep their shared lock throughout.
  Result<void> set_locked(bool locked) const;
  // fallocate(PUNCH_HOLE | KEEP_SIZE). A file system without hole punching leaves the
  // data in place (a discard is a hint, virtio 1.2 5.2.6.2) and this returns 0.
  int discard(uint64_t offset, uint64_t length) const;
  // The range reads back as zeros afterwards: PUNCH_HOLE when `unmap`, else ZERO_RANGE;
  // when the file system refuses both, zeros are written.
  int write_zeroes(uint64_t offset, uint64_t length, bool unmap) const;
  // Writes zeros with pwrite (the fallback of write_zeroes).
  int write_zero_bytes(uint64_t offset, uint64_t length) const;

 private:
  DiskFile(UniqueFd fd, uint64_t size, bool read_only, std::filesystem::path path)
      : fd_(std::move(fd)), size_(size), read_only_(read_only), path_(std::move(path)) {}

  UniqueFd fd_;
  uint64_t size_;
  bool read_only_;
  std::filesystem::path path_;
};

}  // namespace petrel::virtio

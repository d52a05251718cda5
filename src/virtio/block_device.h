// BlockDevice: virtio-blk (virtio 1.2 section 5.2) over a DiskBackend.
//
// One request queue of up to kQueueSize entries. Offered: SIZE_MAX, SEG_MAX, BLK_SIZE
// (512), FLUSH, DISCARD, WRITE_ZEROES, and RO for a read-only disk. Requests are parsed and
// checked by blk::parse_request; a rejected one gets IOERR/UNSUPP in its status byte and
// the device goes on. Valid ones become DiskOps whose iovecs point into guest RAM; they
// complete asynchronously with the io_uring engine (in flight across process_queue calls)
// or at the end of process_queue with the sync engine. Completions, used-ring updates and
// interrupts all happen on the event-loop thread.
//
// Quiesce: the requests in flight are drained (completed and published in the used ring,
// not cancelled); idle follows the last completion. Every chain popped is answered at once
// or in flight, so nothing else is held. Device-specific state: none (the config space is
// read-only: VIRTIO_BLK_F_CONFIG_WCE is not offered, so there is no writeback byte).
//
// Thread affinity: as VirtioDevice. The config space is immutable after construction, so
// read_config needs no lock. reset() drains the backend: when it returns, no operation is in
// flight and nothing more is written to guest memory. stats() may be read from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "virtio/block_config.h"
#include "virtio/block_request.h"
#include "virtio/disk_backend.h"
#include "virtio/disk_file.h"
#include "virtio/virtio_device.h"

namespace petrel::virtio {

// Counters of one BlockDevice since it was built (a device reset keeps them). Requests are
// counted when they complete; the guest decides how many there are and how large.
struct BlockStats {
  uint64_t read_bytes = 0;   // data bytes of IN requests completed successfully
  uint64_t write_bytes = 0;  // data bytes of OUT requests completed successfully
  uint64_t read_ops = 0;
  uint64_t write_ops = 0;
  uint64_t flush_ops = 0;
  uint64_t discard_ops = 0;  // DISCARD and WRITE_ZEROES
  uint64_t errors = 0;       // requests completed with IOERR or UNSUPP (rejected or failed)
};

class BlockDevice final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint32_t kSegMax = kQueueSize - 2;  // header and status take two
  static constexpr uint32_t kSizeMax = 1 << 20;        // bytes per data segment (advisory)
  static constexpr uint64_t kMaxDataBytes = uint64_t{kSegMax} * kSizeMax;
  static constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per request
  static constexpr uint32_t kDiscardSectorAlignment = 8;    // 4 KiB, the host page/fs block

  // Opens and locks the image, picks the engine (open_disk), derives the serial.
  static Result<std::shared_ptr<BlockDevice>> open(const BlockConfig& config);
  // A device over an already opened backend (tests, benchmarks). `serial`: at most 20
  // bytes are used.
  static std::shared_ptr<BlockDevice> create(std::unique_ptr<DiskBackend> backend,
                                             std::string serial);

  struct Passkey {
   private:
    Passkey() = default;
    friend class BlockDevice;
  };
  BlockDevice(Passkey, std::unique_ptr<DiskBackend> backend, std::string serial);
  ~BlockDevice() override;
  BlockDevice(const BlockDevice&) = delete;
  BlockDevice& operator=(const BlockDevice&) = delete;

  uint32_t device_type() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  uint64_t device_features() const override;
  void read_config(uint64_t offset, std::span<std::byte> data) const override;
  void write_config(uint64_t offset, std::span<const std::byte> data) override;
  Result<void> activate(ActivateContext ctx) override;
  void process_queue(uint16_t index) override;
  void reset() override;
  void quiesce(std::function<void()> idle) override;
  void unquiesce() override;
  std::vector<std::optional<QueueIndices>> queue_indices() const override;

  uint64_t capacity_sectors() const { return capacity_sectors_; }
  std::string_view engine_name() const { return backend_->engine_name(); }
  const std::string& serial() const { return serial_; }
  // Requests handed to the backend and not completed yet.
  size_t in_flight() const { return backend_->in_flight(); }
  // Releases (false) or retakes (true) the image's lock for a migration's hand-over; only
  // while the device is quiesced (no request in flight). Any thread.
  Result<void> set_image_locked(bool locked) const {
    const DiskFile* file = backend_->file();
    return file != nullptr ? file->set_locked(locked) : Result<void>{};
  }

  // Any thread: relaxed reads of the counters (each monotonic; not a consistent cut).
  BlockStats stats() const;

  // Told about each request the backend failed (submit refused it or it completed with an
  // errno), with a one-line description. Set before activation; called on the event-loop
  // thread, once per failed request (the guest can make many: the receiver rate-limits).
  using ErrorHandler = std::function<void(std::string message)>;
  void set_error_handler(ErrorHandler handler) { error_handler_ = std::move(handler); }

  // 20 bytes derived from the image path (FNV-1a of the absolute path), stable across runs.
  static std::string default_serial(const std::filesystem::path& path);

 private:
  struct InFlight {
    GuestAddress status;
    uint32_t used_len = 0;                 // on success
    std::vector<DescriptorSegment> dirty;  // IN: guest ranges the backend filled
    DiskOpKind kind = DiskOpKind::kRead;   // for the counters and error reports
    uint64_t offset = 0;                   // bytes into the image
    uint64_t length = 0;                   // bytes
  };

  struct AtomicStats {
    std::atomic<uint64_t> read_bytes{0}, write_bytes{0}, read_ops{0}, write_ops{0}, flush_ops{0},
        discard_ops{0}, errors{0};
  };

  void handle(const DescriptorChain& chain);
  Result<DiskOp> make_op(blk::Request& request) const;
  void on_completions(std::span<const DiskCompletion> done);
  // Writes the status byte and publishes the chain in the used ring.
  void finish(uint16_t head, std::optional<GuestAddress> status, uint8_t value, uint32_t used_len);
  void signal_used();
  void ring_broken(const Error& error);
  void count_success(const InFlight& entry);
  void report_io_error(DiskOpKind kind, uint64_t offset, const std::string& what);
  // Calls idle_ once nothing is in flight (quiesce).
  void maybe_idle();
  uint64_t tag_of(uint16_t head) const { return (generation_ << 16) | head; }

  std::unique_ptr<DiskBackend> backend_;
  std::string serial_;
  uint64_t capacity_sectors_;
  std::vector<std::byte> config_;  // struct virtio_blk_config (5.2.4), built once

  // Event-loop thread state, valid between activate() and reset().
  const GuestMemory* mem_ = nullptr;
  VirtioInterrupt* interrupt_ = nullptr;
  std::optional<Virtqueue> queue_;
  blk::Limits limits_;
  bool flush_negotiated_ = false;
  bool active_ = false;
  bool broken_ = false;    // the driver broke the ring: DEVICE_NEEDS_RESET until reset
  bool draining_ = false;  // inside reset(): completions are dropped
  bool processing_ = false;
  bool pending_notify_ = false;
  uint64_t generation_ = 0;                         // bumped on reset, part of every tag
  std::vector<std::optional<InFlight>> in_flight_;  // by head
  std::function<void()> idle_;                      // quiesce waiting for the drain
  ErrorHandler error_handler_;                      // set before activation
  AtomicStats stats_;                               // written on the loop, read anywhere
};

}  // namespace petrel::virtio

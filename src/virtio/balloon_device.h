// BalloonDevice: the traditional memory balloon (virtio 1.2 section 5.5, device id 5).
//
// Features offered (5.5.3): VIRTIO_BALLOON_F_STATS_VQ always; F_DEFLATE_ON_OOM and
// F_PAGE_REPORTING when configured. Not F_MUST_TELL_HOST: a deflated page needs nothing from
// the host before the guest uses it again (it was discarded, it faults in as a fresh zero
// page), so the driver may reuse pages before the deflate is acknowledged (5.5.6). Not
// F_FREE_PAGE_HINT nor F_PAGE_POISON, so free_page_hint_cmd_id and poison_val are absent:
// the configuration space is num_pages (host-set target, 4 KiB pages) and actual (written by
// the driver, untrusted: only reported); reads past them give zeros.
//
// Queues (5.5.2): 0 inflateq, 1 deflateq, 2 statsq (when F_STATS_VQ is negotiated). The spec
// lists free_page_vq at 3 and reporting_vq at 4, but Linux (since "virtio: don't allocate
// vqs when names[i] = NULL") and QEMU number only the queues that exist, so Linux puts
// reporting_vq right after the last existing queue (3 with the stats queue, else 2). With
// F_PAGE_REPORTING offered the device exposes five queue slots and serves whichever the
// driver enables as the reporting queue: index 2 + STATS_VQ (Linux, QEMU) or 4 (the spec's
// table). The free_page_vq slot 3 is never free page hinting (not offered).
//
// Guest input (all untrusted): inflate/deflate chains are arrays of le32 page frame numbers
// (address / 4096, 5.5.6) in their device-readable part. A PFN inside guest RAM is acted on:
// inflate discards the page (GuestMemory::discard: reads as zeros, host memory freed; 5.5.6.2
// lets the device change a page once it is in an inflate request) and marks it in the
// ballooned map; deflate clears the mark (pages taken back beyond what the target released
// are counted as oom_deflated: the driver's deflate on OOM, 5.5.6.1, logged; without the
// feature negotiated it is a driver error, honoured and warned about once). PFNs outside RAM, a
// trailing partial PFN (a readable length not a multiple of 4) and PFNs past kMaxPfnBytesPerChain
// are ignored, counted and logged (the first kMaxLoggedIgnores, then once "suppressed"). Reporting
// chains (5.5.6.7) list free ranges in the descriptors themselves: every page fully inside a
// segment (readable or writable) is discarded but not marked (the guest keeps owning it and
// treats it as uninitialised, 5.5.6.7.2 lets the device change it without F_PAGE_POISON). Chains
// are returned with used length 0. Stats (5.5.6.3): the device parses the buffer (BalloonStats),
// keeps the chain and returns it after `stats_interval` to ask for fresh ones (0: never, the
// first stats stay); a driver that makes a second buffer available gets the held one back.
//
// Quiesce: nothing is in flight. The held stats chain is given back to the ring (the statsq
// available index is rewound by one, so the saved queue indices show it as not yet popped)
// and marked "rewound": the next pop of the stats queue (after unquiesce, or in the restored
// device) holds it again without parsing it, so the stats keep their time. Returning it used
// instead would ask the driver for stats. Save state: target, actual, the rewound mark, the
// last stats and the ballooned map (a restored VM knows which pages are out).
//
// Reset (the driver's): queues dropped, stats polling stopped, the ballooned map cleared and
// actual set to 0 (a fresh driver owns all its memory again); the target stays.
//
// Thread affinity: as VirtioDevice. set_target_pages, target_pages, actual_pages, stats,
// counters, ballooned_pages and ballooned_page_count: any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "virtio/balloon_page_map.h"
#include "virtio/balloon_stats.h"
#include "virtio/virtio_device.h"

namespace petrel::virtio {

struct BalloonOptions {
  uint32_t initial_target_pages = 0;  // num_pages at start, 4 KiB pages
  bool deflate_on_oom = false;        // offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM
  bool free_page_reporting = false;   // offer VIRTIO_BALLOON_F_PAGE_REPORTING
  // How long the device keeps the driver's stats buffer before returning it for fresh
  // stats; zero: never returned (only the first stats arrive).
  std::chrono::milliseconds stats_interval{0};
};

struct BalloonCounters {
  uint64_t inflated_pages = 0;  // PFNs inside RAM in inflate requests
  uint64_t deflated_pages = 0;  // PFNs inside RAM in deflate requests
  uint64_t reported_pages = 0;  // 4 KiB pages discarded from free page reports
  uint64_t ignored_pfns = 0;    // PFNs outside RAM, partial or past the per-chain limit
  uint64_t discard_errors = 0;  // GuestMemory::discard failures (the pages stay resident)
  // Deflated pages the host did not ask for: taken back while the balloon held no more than
  // the target (the driver's deflate on OOM, 5.5.6.1).
  uint64_t oom_deflated_pages = 0;
};

class BalloonDevice final : public VirtioDevice,
                            public std::enable_shared_from_this<BalloonDevice> {
  struct Key {};  // only create() constructs

 public:
  // 5.5.3 feature bits.
  static constexpr unsigned kFMustTellHost = 0;
  static constexpr unsigned kFStatsVq = 1;
  static constexpr unsigned kFDeflateOnOom = 2;
  static constexpr unsigned kFFreePageHint = 3;
  static constexpr unsigned kFPagePoison = 4;
  static constexpr unsigned kFPageReporting = 5;
  static constexpr uint16_t kInflateQueue = 0;
  static constexpr uint16_t kDeflateQueue = 1;
  static constexpr uint16_t kStatsQueue = 2;
  static constexpr uint16_t kSpecReportingQueue = 4;
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint64_t kPfnPageSize = 4096;  // 5.5.6: PFNs are in 4 KiB units
  // Readable bytes of one inflate/deflate chain that are looked at (256 Ki PFNs = 1 GiB).
  static constexpr uint32_t kMaxPfnBytesPerChain = 1 << 20;
  // Readable bytes of a stats buffer that are parsed (far more than the 10 known tags).
  static constexpr uint32_t kMaxStatsBytes = 4096;
  static constexpr unsigned kMaxLoggedIgnores = 8;

  // `memory` (the guest RAM the device will be activated with) and `io` (the VMM event
  // loop) outlive the device.
  static Result<std::shared_ptr<BalloonDevice>> create(const GuestMemory& memory,
                                                       const BalloonOptions& options,
                                                       boost::asio::io_context& io);
  BalloonDevice(Key, const GuestMemory& memory, const BalloonOptions& options,
                boost::asio::io_context& io);
  ~BalloonDevice() override;

  uint32_t device_type() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  uint64_t device_features() const override { return offered_; }
  void read_config(uint64_t offset, std::span<std::byte> data) const override;
  void write_config(uint64_t offset, std::span<const std::byte> data) override;
  uint32_t config_generation() const override;
  Result<void> activate(ActivateContext ctx) override;
  void process_queue(uint16_t index) override;
  void reset() override;
  void quiesce(std::function<void()> idle) override;
  void unquiesce() override;
  std::vector<std::optional<QueueIndices>> queue_indices() const override;
  std::vector<std::byte> save_state() const override;
  Result<void> restore_state(std::span<const std::byte> state) override;

  // Host side. Sets num_pages, bumps the config generation and (when the driver is active)
  // sends a configuration-change interrupt from the loop. Any thread.
  void set_target_pages(uint32_t pages);
  uint32_t target_pages() const;
  uint32_t actual_pages() const;  // the driver's `actual` (untrusted)
  BalloonStats stats() const;
  BalloonCounters counters() const;
  // Pages in the balloon, per region of the memory (BalloonPageMap's layout, = PageSkip's).
  std::vector<std::vector<uint64_t>> ballooned_pages() const { return pages_.words(); }
  uint64_t ballooned_page_count() const { return pages_.count(); }

 private:
  enum class Role { kNone, kInflate, kDeflate, kStats, kReporting };
  struct PfnRun;

  // Each returns false when the ring broke (already reported).
  bool drain(uint16_t index);
  void handle_pfns(const DescriptorChain& chain, bool inflate);
  void flush_run(PfnRun& run, bool inflate);
  // After a deflate request: counts the pages taken back beyond what the target released.
  void account_unrequested(uint64_t held_before, uint64_t taken_back);
  void handle_report(const DescriptorChain& chain);
  bool handle_stats(uint16_t index, const DescriptorChain& chain);
  void arm_stats_timer();
  void return_stats_buffer();
  bool notify_used(uint16_t index);
  void ignore(uint64_t pfns, const std::string& why);
  void fail_ring(uint16_t index, const Error& error);
  void post_config_notify();

  // Constant after construction.
  const GuestMemory& memory_;
  const BalloonOptions options_;
  boost::asio::io_context& io_;
  uint64_t offered_ = 0;
  size_t num_queues_ = 0;

  // Config space: any thread, under config_mutex_.
  mutable std::mutex config_mutex_;
  uint32_t target_ = 0;
  uint32_t actual_ = 0;
  uint32_t generation_config_ = 0;

  // Event-loop thread only (restore_state: before activation).
  bool active_ = false;
  bool quiesced_ = false;
  bool config_notify_pending_ = false;  // a target change arrived while quiesced
  uint64_t features_ = 0;
  VirtioInterrupt* irq_ = nullptr;
  boost::asio::io_context* loop_ = nullptr;
  std::vector<std::optional<Virtqueue>> queues_;
  std::vector<Role> roles_;
  uint64_t generation_ = 0;  // bumped by reset/quiesce: posted work and timers become no-ops
  std::optional<boost::asio::steady_timer> stats_timer_;
  std::optional<uint16_t> held_stats_;  // head of the stats chain the device keeps
  uint16_t stats_queue_ = kStatsQueue;
  bool stats_rewound_ = false;
  unsigned ignores_logged_ = 0;
  bool unrequested_warned_ = false;

  BalloonPageMap pages_;  // thread-safe itself

  mutable std::mutex stats_mutex_;
  BalloonStats stats_;

  struct AtomicCounters {
    std::atomic<uint64_t> inflated{0}, deflated{0}, reported{0}, ignored{0}, discard_errors{0},
        oom_deflated{0};
  } counters_;
};

}  // namespace petrel::virtio

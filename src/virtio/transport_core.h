// TransportCore: the part of a virtio transport that MMIO (4.2) and PCI (4.1) share: feature
// negotiation through 32-bit select windows (2.2), the device status state machine (2.1,
// 3.1.1), the per-queue registers, the ISR / InterruptStatus bits, config generation, queue
// kick EventFds and device activation / reset on the VMM event loop. A concrete transport
// maps its registers onto these calls and supplies how an interrupt reaches the guest.
//
// Everything a register write carries is guest-controlled: a write that is illegal in the
// current state is ignored (logged at debug level), never an error for the VMM.
//
// Threading:
//  - Register accessors (features, status, queue registers, ISR, config, kick()) are called
//    from vCPU threads, several at once; they take mutex_ for the register state. They never
//    wait while holding it.
//  - write_status(0) (reset) posts device->reset() to the event loop and waits for it
//    (unless already on the loop thread), so the loop must be running while vCPUs run.
//  - activate / process_queue / reset of the device run on the event-loop thread only
//    (VirtioDevice contract). notify_queue / notify_config / set_needs_reset (VirtioInterrupt,
//    used by the device) are called on the loop thread, and so is the Deliver callback.
//  - kick_fd() and num_queues() are constant for the core's life: any thread.
//  - stop() runs on the loop thread (directly, or posted and waited for from another thread
//    while the loop runs). Destroy the core on the loop thread or when no thread runs the
//    loop, after stop() (the destructor stops it itself if needed).
//  - quiesce / unquiesce: loop thread. save_state: any thread while quiesced (or never
//    activated). parse_state: any thread. apply_state: on a freshly created core, before
//    vCPUs run; the loop need not run yet (the activation it needs is posted).
// Sources: transport_core.cc (features, status, activation), transport_core_queues.cc (queue
// registers, kicks), transport_core_loop.cc (event-loop side), transport_core_state.cc
// (quiesce, save and restore).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "virtio/virtio_device.h"
#include "vmm/base/event_fd.h"
#include "vmm/base/guest_address.h"
#include "vmm/base/guest_memory.h"
#include "vmm/base/result.h"
#include "vmm/base/state_codec.h"

namespace petrel::virtio {

enum class InterruptKind {
  kQueue,   // used buffers in a queue (ISR bit 0)
  kConfig,  // configuration change or DEVICE_NEEDS_RESET (ISR bit 1)
};

// The three areas of a split queue (2.7): descriptor table, driver (avail) and device (used).
enum class QueueArea { kDesc, kDriver, kDevice };

class TransportCore final : public VirtioInterrupt {
 public:
  // How the concrete transport signals the guest (MMIO: irqfd; PCI: MSI-X vector). The core
  // has already set the matching ISR bit when it calls this. `queue` is meaningful for
  // kQueue only. Called on the event-loop thread without the core's mutex held.
  using Deliver = std::function<void(InterruptKind kind, uint16_t queue)>;

  // `memory` and `io` outlive the core. Creates one EFD_NONBLOCK kick EventFd per queue and
  // arms a wait on each on the loop thread.
  static Result<std::unique_ptr<TransportCore>> create(boost::asio::io_context& io,
                                                       const GuestMemory& memory,
                                                       std::shared_ptr<VirtioDevice> device,
                                                       Deliver deliver);
  ~TransportCore() override;
  TransportCore(const TransportCore&) = delete;
  TransportCore& operator=(const TransportCore&) = delete;

  VirtioDevice& device() const { return *device_; }
  uint32_t device_type() const { return device_->device_type(); }
  uint16_t num_queues() const { return static_cast<uint16_t>(queues_.size()); }
  // device_features() | VERSION_1 | INDIRECT_DESC | EVENT_IDX.
  uint64_t offered_features() const { return offered_; }

  // 2.2 feature bits, 32 at a time. Word `select` of the offered features (0 past bit 63).
  void set_device_features_select(uint32_t select);
  uint32_t device_features_select() const;
  uint32_t device_features_word() const;
  // Stores word `select` of the driver's features; ignored once FEATURES_OK is set. A set
  // bit in a word past 1 is remembered as an unoffered bit (FEATURES_OK is then refused).
  void set_driver_features_select(uint32_t select);
  uint32_t driver_features_select() const;
  void set_driver_features_word(uint32_t value);
  uint32_t driver_features_word() const;
  uint64_t driver_features() const;

  // 2.1 device status. A write of 0 resets the device (waits until device->reset() has
  // run). Otherwise bits may only be added, in the order ACKNOWLEDGE, DRIVER, FEATURES_OK,
  // DRIVER_OK; a bit out of order (and any later bit in the same write) is not set.
  // FEATURES_OK is not set when the driver accepted an unoffered bit or not VERSION_1
  // (3.1.1: the driver reads it back clear). DRIVER_OK activates the device with the ready
  // queues; a queue that cannot be used sets DEVICE_NEEDS_RESET instead. After FAILED only
  // a reset is accepted. DEVICE_NEEDS_RESET is the device's bit: the driver cannot change it.
  uint8_t status() const;
  void write_status(uint8_t value);

  // Queue registers, for the queue chosen with select_queue(). Writes are ignored while
  // DRIVER_OK is set or when the selected queue does not exist (then reads give 0).
  void select_queue(uint32_t index);
  uint32_t queue_select() const;
  uint16_t queue_max_size() const;  // 0: no such queue (4.2.2 QueueNumMax)
  uint16_t queue_size() const;      // starts at the maximum
  // A size of 0 or above the maximum is not stored, and marks the queue so that DRIVER_OK
  // with it ready sets DEVICE_NEEDS_RESET (the MMIO driver cannot read QueueNum back).
  void set_queue_size(uint32_t size);
  bool queue_ready() const;
  void set_queue_ready(bool ready);
  uint64_t queue_address(QueueArea area) const;
  void set_queue_address(QueueArea area, uint64_t addr);
  // One 32-bit half of an address (MMIO QueueDescLow/High, ...).
  void set_queue_address_half(QueueArea area, bool high, uint32_t value);

  // The driver notified `queue` through a register write that reached the VMM (not caught
  // by an ioeventfd): signals its kick EventFd. Out-of-range indices are ignored.
  void kick(uint32_t queue);
  // The EventFd to register as ioeventfd for the queue's notify address. index < num_queues().
  const EventFd& kick_fd(uint16_t index) const { return queues_[index].kick; }

  // ISR / InterruptStatus bits (kInterruptUsedBuffer, kInterruptConfigChange).
  uint32_t interrupt_status() const;
  void ack_interrupt(uint32_t bits);  // MMIO InterruptACK
  uint32_t take_interrupt_status();   // PCI ISR: read-to-clear (4.1.4.5)

  // Device configuration space, forwarded to the device (offset relative to its start).
  uint32_t config_generation() const { return device_->config_generation(); }
  void read_config(uint64_t offset, std::span<std::byte> data) const;
  void write_config(uint64_t offset, std::span<const std::byte> data);

  // Cancels the kick waits and resets an active device. Idempotent. On the loop thread it
  // runs directly; from another thread it is posted and waited for (the loop must run).
  void stop();

  // VirtioInterrupt, for the device. Event-loop thread; ignored when not active (or from
  // an activation the driver has already reset).
  void notify_queue(uint16_t index) override;
  void notify_config() override;
  void set_needs_reset() override;

  // --- quiesce (the VMM's own, for pause / snapshot / migration) ---
  // Loop thread. From now on a kick is consumed and noted, not acted on; an active device is
  // asked to quiesce (VirtioDevice::quiesce) and `idle` is called once it is idle (at once
  // when no device is active). Calling it again while quiesced is not allowed.
  void quiesce(std::function<void()> idle);
  // Loop thread. Ends the quiesce (also one still waiting for the device): the device
  // resumes and every queue kicked meanwhile is processed.
  void unquiesce();
  bool quiesced() const { return quiesced_; }

  // --- state ---
  // What save_state records and parse_state returns: the registers, and for a device that is
  // active (DRIVER_OK without DEVICE_NEEDS_RESET) each ready queue's indices, plus the
  // device's own bytes.
  struct SavedQueue {
    uint16_t size = 0;
    bool ready = false;
    bool size_refused = false;
    uint64_t desc = 0;
    uint64_t driver = 0;
    uint64_t device = 0;
    std::optional<QueueIndices> indices;
  };
  struct SavedState {
    uint8_t status = 0;
    uint32_t device_features_select = 0;
    uint32_t driver_features_select = 0;
    uint64_t driver_features = 0;
    bool driver_unknown_features = false;
    uint32_t queue_select = 0;
    uint32_t isr = 0;
    std::vector<SavedQueue> queues;
    std::vector<std::byte> device_state;
  };
  // Appends the state. kState when the core is active but not quiesced (or stopped), or the
  // device does not report the indices of a ready queue.
  Result<void> save_state(StateWriter& out) const;
  // Reads and checks a state written by save_state against this core (queue count and
  // maximum sizes, offered features, guest RAM). The bytes are untrusted: every field is
  // checked and a bad one is a kInvalidArgument naming it; changes nothing.
  Result<SavedState> parse_state(StateReader& in) const;
  // Installs a state from parse_state (same core) into a core that was never activated.
  // When the device was active, builds its queues at the saved indices and posts their
  // activation (the DRIVER_OK path), then processes every queue once and notifies every
  // queue (a spurious interrupt is harmless, a lost one hangs the driver). Fails (changing
  // nothing) only when the device refuses its bytes.
  Result<void> apply_state(SavedState state);

  // Use create(); public only for std::make_unique.
  TransportCore(boost::asio::io_context& io, const GuestMemory& memory,
                std::shared_ptr<VirtioDevice> device, Deliver deliver);

 private:
  struct Queue {
    uint16_t max_size = 0;
    uint16_t size = 0;
    bool size_refused = false;  // the driver wrote an unusable size since the last reset
    bool ready = false;
    uint64_t desc = 0;
    uint64_t driver = 0;
    uint64_t device = 0;
    EventFd kick;
    std::unique_ptr<boost::asio::posix::stream_descriptor> waiter;  // loop thread only
  };

  Result<void> init_queues();
  // The selected queue, if it exists. mutex_ held.
  Queue* selected_queue();
  const Queue* selected_queue() const;
  // The selected queue if it exists and its registers may change (no DRIVER_OK), else logs
  // the refused write of `what`. mutex_ held.
  Queue* writable_queue(const char* what);
  static uint64_t& area_ref(Queue& q, QueueArea area);
  static uint64_t area_value(const Queue& q, QueueArea area);
  // Status bit steps; mutex_ held. Return false when the bit is refused.
  bool accept_features();
  // DRIVER_OK: fills `ctx` with a Virtqueue per ready queue, or sets DEVICE_NEEDS_RESET and
  // the config ISR bit and returns false.
  bool activate_locked_into(ActivateContext& ctx);
  void reset_registers();
  void reset();
  // Loop thread.
  void run_activation(uint64_t epoch, ActivateContext ctx);
  void arm_kick(uint16_t index);
  void stop_on_loop();
  void deliver_if_current(InterruptKind kind, uint16_t queue, uint64_t epoch);
  // Loop thread: the activation of a restored active device, then a pass over every queue.
  void run_restored_activation(uint64_t epoch, ActivateContext ctx);
  // Status has DRIVER_OK and not DEVICE_NEEDS_RESET: the device works on its queues.
  static bool working(uint8_t status);
  // Runs `fn` on the loop thread and waits for it (directly when already there, or when
  // the loop has stopped and nothing else runs it).
  void run_on_loop(const std::function<void()>& fn);

  boost::asio::io_context& io_;
  const GuestMemory& memory_;
  std::shared_ptr<VirtioDevice> device_;
  Deliver deliver_;
  uint64_t offered_ = 0;

  mutable std::mutex mutex_;  // guards the register state below
  uint8_t status_ = 0;
  uint32_t device_features_select_ = 0;
  uint32_t driver_features_select_ = 0;
  uint64_t driver_features_ = 0;
  bool driver_unknown_features_ = false;
  uint32_t queue_select_ = 0;
  uint32_t isr_ = 0;
  // Incremented by every reset; ties an activation to the driver session that asked for it.
  uint64_t epoch_ = 0;
  bool activation_posted_ = false;
  std::vector<Queue> queues_;  // registers under mutex_; `kick` constant; `waiter` loop

  // Loop thread only. `activated_`: device->activate was called (reset owed);
  // `active_`: and it succeeded (queues are processed).
  bool activated_ = false;
  bool active_ = false;
  uint64_t active_epoch_ = 0;
  std::atomic<bool> stopped_ = false;
  // Quiesced: kicks are noted in `kicked_` (per queue) and replayed by unquiesce.
  std::atomic<bool> quiesced_ = false;
  std::vector<bool> kicked_;
  std::atomic<bool> exit_kick_logged_ = false;  // kick() logged once (any vCPU thread)
  // Posted handlers hold a weak_ptr to this: expired means the core is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace petrel::virtio

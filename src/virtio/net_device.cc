#include "virtio/net_device.h"

#include <fcntl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include "virtio/net_tx.h"
#include "virtio/tap.h"
#include "virtio/virtio_spec.h"

namespace petrel::virtio {

namespace {

using namespace net;

// Work done per event-loop turn before yielding to other handlers (the rest is posted).
constexpr unsigned kTxBudget = 256;  // chains
constexpr unsigned kRxBudget = 64;   // frames
constexpr uint16_t kMinMtu = 68;     // 5.1.4.1

bool has(uint64_t features, unsigned bit) {
  return (features & feature_bit(bit)) != 0;
}

void put_le16(std::span<std::byte> out, uint64_t offset, uint16_t value) {
  std::memcpy(out.data() + offset, &value, sizeof(value));
}

}  // namespace

Result<std::shared_ptr<NetDevice>> NetDevice::create(const NetConfig& config,
                                                     boost::asio::io_context& io) {
  PETREL_TRY_ASSIGN(
      auto tap,
      Tap::open(TapOptions{config.tap_name, config.mtu}).context("virtio-net: TAP backend"));
  const MacAddress mac = config.mac.value_or(MacAddress::generate(config.vm_name, config.index));
  spdlog::info("virtio-net {}: TAP {}{}, MAC {}", config.index, tap->name(),
               tap->created() ? " (created)" : "", mac.to_string());
  std::string tap_name = tap->name();
  PETREL_TRY_ASSIGN(auto device, create(std::move(tap), mac, config.mtu, io));
  device->tap_name_ = std::move(tap_name);
  return device;
}

Result<std::shared_ptr<NetDevice>> NetDevice::create(std::unique_ptr<NetBackend> backend,
                                                     MacAddress mac, std::optional<uint16_t> mtu,
                                                     boost::asio::io_context& io) {
  if (backend == nullptr) {
    return Error(ErrorCode::kInvalidArgument, "virtio-net: no backend");
  }
  if (mac.is_multicast() || mac.is_zero()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("virtio-net: MAC {} is not a unicast address", mac.to_string()));
  }
  if (mtu && *mtu < kMinMtu) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("virtio-net: MTU {} is below {}", *mtu, kMinMtu));
  }
  return std::make_shared<NetDevice>(Key{}, std::move(backend), mac, mtu, io);
}

NetDevice::NetDevice(Key, std::unique_ptr<NetBackend> backend, MacAddress mac,
                     std::optional<uint16_t> mtu, boost::asio::io_context& io)
    : backend_(std::move(backend)),
      mac_(mac),
      mtu_(mtu),
      io_(io),
      rx_buf_(kHdrSize + kMaxFrameLen + 1) {  // +1: a longer frame shows as oversized
  uint64_t f = feature_bit(kFMac) | feature_bit(kFStatus) | feature_bit(kFMrgRxbuf);
  if (mtu_) {
    f |= feature_bit(kFMtu);
  }
  const NetOffloads off = backend_->supported_offloads();
  if (off.csum) {
    f |= feature_bit(kFCsum) | feature_bit(kFGuestCsum);
    if (off.tso4) {
      f |= feature_bit(kFHostTso4) | feature_bit(kFGuestTso4);
    }
    if (off.tso6) {
      f |= feature_bit(kFHostTso6) | feature_bit(kFGuestTso6);
    }
    if (off.tso_ecn && (off.tso4 || off.tso6)) {
      f |= feature_bit(kFHostEcn) | feature_bit(kFGuestEcn);
    }
  }
  features_offered_ = f;
}

NetDevice::~NetDevice() {
  stop();
}

uint32_t NetDevice::device_type() const {
  return kDeviceNet;
}

std::vector<uint16_t> NetDevice::queue_max_sizes() const {
  return {kQueueSize, kQueueSize};
}

void NetDevice::read_config(uint64_t offset, std::span<std::byte> data) const {
  // 5.1.4: mac, status, max_virtqueue_pairs, mtu. All constant, so no locking.
  std::array<std::byte, kConfigSize> cfg{};
  std::memcpy(cfg.data() + kConfigMac, mac_.bytes().data(), MacAddress::kSize);
  put_le16(cfg, kConfigStatus, kStatusLinkUp);
  put_le16(cfg, kConfigMaxVirtqueuePairs, 1);
  put_le16(cfg, kConfigMtu, mtu_.value_or(0));
  std::fill(data.begin(), data.end(), std::byte{0});
  if (offset < cfg.size()) {
    const size_t n = std::min<uint64_t>(cfg.size() - offset, data.size());
    std::memcpy(data.data(), cfg.data() + offset, n);
  }
}

void NetDevice::write_config(uint64_t offset, std::span<const std::byte> data) {
  // 5.1.4.2: every field is read-only for a VERSION_1 driver.
  spdlog::debug("virtio-net: {}-byte config write at {:#x} ignored", data.size(), offset);
}

Result<void> NetDevice::activate(ActivateContext ctx) {
  if (active_) {
    return Error(ErrorCode::kState, "virtio-net: already active");
  }
  if (ctx.memory == nullptr || ctx.interrupt == nullptr || ctx.queues.size() != 2) {
    return Error(ErrorCode::kInternal, "virtio-net: incomplete activation context");
  }
  const uint64_t features = ctx.features;
  NetOffloads guest;
  guest.csum = has(features, kFGuestCsum);
  guest.tso4 = guest.csum && has(features, kFGuestTso4);
  guest.tso6 = guest.csum && has(features, kFGuestTso6);
  guest.tso_ecn = (guest.tso4 || guest.tso6) && has(features, kFGuestEcn);
  PETREL_TRY(backend_->set_offloads(guest).context("virtio-net: offloads"));

  UniqueFd dup(::fcntl(backend_->fd(), F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) {
    return Error::from_errno("virtio-net: dup backend fd", errno);
  }
  boost::asio::io_context& loop = ctx.io != nullptr ? *ctx.io : io_;
  try {
    watch_.emplace(loop, dup.get());
    dup.release();
  } catch (const boost::system::system_error& e) {
    return Error(ErrorCode::kIo, fmt::format("virtio-net: watching the backend: {}", e.what()));
  }
  loop_ = &loop;
  ++generation_;
  features_ = features;
  mem_ = ctx.memory;
  irq_ = ctx.interrupt;
  rx_ = std::move(ctx.queues[kRxQueue]);
  tx_ = std::move(ctx.queues[kTxQueue]);
  rx_failed_ = false;
  drop_pending_rx();  // nothing from an activation that ended without a reset
  rx_chains_.clear();
  rx_chains_gap_ = false;
  quiesced_ = false;
  rx_used_.clear();
  active_ = true;
  process_rx();
  process_tx();
  return {};
}

void NetDevice::process_queue(uint16_t index) {
  if (!active_) {
    return;
  }
  if (index == kRxQueue) {
    process_rx();
  } else if (index == kTxQueue) {
    process_tx();
  }
}

void NetDevice::reset() {
  stop();
  active_ = false;
  if (auto r = backend_->set_offloads(NetOffloads{}); !r.ok()) {
    spdlog::warn("virtio-net: reset: {}", r.error().to_string());
  }
  features_ = 0;
  mem_ = nullptr;
  irq_ = nullptr;
  rx_.reset();
  tx_.reset();
  rx_failed_ = false;
  drop_pending_rx();
  rx_chains_.clear();
  rx_chains_gap_ = false;
  rx_used_.clear();
  quiesced_ = false;
}

void NetDevice::drop_pending_rx() {
  if (rx_pending_ != 0) {
    stats_.rx_dropped.fetch_add(1, std::memory_order_relaxed);
  }
  rx_pending_ = 0;
}

NetStats NetDevice::stats() const {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  return NetStats{stats_.tx_frames.load(kRelaxed), stats_.tx_bytes.load(kRelaxed),
                  stats_.tx_errors.load(kRelaxed), stats_.rx_frames.load(kRelaxed),
                  stats_.rx_bytes.load(kRelaxed),  stats_.rx_errors.load(kRelaxed),
                  stats_.rx_dropped.load(kRelaxed)};
}

Result<std::optional<DescriptorChain>> NetDevice::pop(Virtqueue& queue) {
  PETREL_TRY_ASSIGN(auto chain, queue.pop(*mem_));
  if (chain) {
    return chain;
  }
  // 2.7.10: with EVENT_IDX, ask for a kick on the next buffer, then look once more so one
  // made available meanwhile is not missed.
  PETREL_TRY(queue.update_avail_event(*mem_));
  return queue.pop(*mem_);
}

void NetDevice::process_tx() {
  if (!active_ || quiesced_ || !tx_ || write_armed_) {
    return;  // while waiting for the backend to drain, the retry comes from its fd
  }
  bool used = false;
  for (unsigned i = 0; i < kTxBudget; ++i) {
    auto popped = pop(*tx_);
    if (!popped.ok()) {
      fail_ring(kTxQueue, popped.error());
      return;
    }
    if (!*popped) {
      if (used) {
        notify(*tx_, kTxQueue);
      }
      return;
    }
    const DescriptorChain& chain = **popped;
    auto frame = parse_tx_chain(*mem_, chain, features_);
    if (!frame.ok()) {
      stats_.tx_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("virtio-net: TX chain {} dropped: {}", chain.head(), frame.error().to_string());
    } else {
      std::vector<iovec> iov;
      iov.reserve(frame->frame.size() + 1);
      iov.push_back(iovec{&frame->hdr, kHdrSize});
      bool mapped = true;
      for (const auto& seg : frame->frame) {
        auto bytes = mem_->slice(seg.addr, seg.len);
        if (!bytes.ok()) {
          mapped = false;
          break;
        }
        iov.push_back(iovec{bytes->data(), bytes->size()});
      }
      auto written = mapped ? backend_->write_frame(iov)
                            : Result<std::optional<size_t>>(
                                  Error(ErrorCode::kInternal, "TX buffer left guest RAM"));
      if (written.ok() && !*written) {
        tx_->undo_pop();
        if (used) {
          notify(*tx_, kTxQueue);
        }
        arm_wait(true);
        return;
      }
      if (written.ok()) {
        stats_.tx_frames.fetch_add(1, std::memory_order_relaxed);
        stats_.tx_bytes.fetch_add(frame->frame_len, std::memory_order_relaxed);
      } else {
        stats_.tx_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("virtio-net: TX frame refused: {}", written.error().to_string());
      }
    }
    // 5.1.6.2: the device writes nothing into a transmit buffer.
    if (auto r = tx_->add_used(*mem_, chain.head(), 0); !r.ok()) {
      fail_ring(kTxQueue, r.error());
      return;
    }
    used = true;
  }
  notify(*tx_, kTxQueue);
  post_again(true);
}

void NetDevice::process_rx() {
  if (!active_ || quiesced_ || !rx_ || rx_failed_) {
    return;
  }
  unsigned frames = 0;
  for (; frames < kRxBudget; ++frames) {
    if (rx_pending_ == 0) {
      iovec iov{rx_buf_.data(), rx_buf_.size()};
      auto got = backend_->read_frame(std::span(&iov, 1));
      if (!got.ok()) {
        stats_.rx_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("virtio-net: receive stopped until reset: {}", got.error().to_string());
        rx_failed_ = true;
        break;
      }
      if (!*got) {
        arm_wait(false);
        break;
      }
      const size_t len = **got;
      if (len < kHdrSize + kMinFrameLen || len > kHdrSize + kMaxFrameLen) {
        stats_.rx_dropped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      rx_pending_ = len;
    }
    const Delivery d = deliver_pending();
    if (d == Delivery::kRingError) {
      return;
    }
    if (d == Delivery::kNoBuffers) {
      break;  // the driver's next kick on queue 0 resumes; the backend is not polled
    }
  }
  if (!flush_rx()) {
    return;
  }
  if (frames == kRxBudget) {
    post_again(false);
  }
}

NetDevice::Delivery NetDevice::deliver_pending() {
  const bool mergeable = has(features_, kFMrgRxbuf);
  const uint64_t packet_len = rx_pending_;
  size_t needed = 0;
  while ((needed = rx_chains_needed(rx_chains_, packet_len, mergeable)) == 0) {
    // Without MRG_RXBUF the first chain must take the whole frame; with it, a frame that
    // more chains than the queue holds cannot cover is as undeliverable.
    if (!rx_chains_.empty() && (!mergeable || rx_chains_.size() >= rx_->size())) {
      stats_.rx_dropped.fetch_add(1, std::memory_order_relaxed);
      rx_pending_ = 0;
      return Delivery::kDropped;
    }
    auto popped = pop(*rx_);
    if (!popped.ok()) {
      fail_ring(kRxQueue, popped.error());
      return Delivery::kRingError;
    }
    if (!*popped) {
      return Delivery::kNoBuffers;
    }
    if ((*popped)->writable_bytes() < kHdrSize) {
      // 5.1.6.3.1: every receive buffer holds at least a header. Give it back empty.
      stats_.rx_errors.fetch_add(1, std::memory_order_relaxed);
      rx_chains_gap_ = rx_chains_gap_ || !rx_chains_.empty();
      const UsedEntry empty{(*popped)->head(), 0};
      if (!append_used(std::span(&empty, 1))) {
        return Delivery::kRingError;
      }
      continue;
    }
    rx_chains_.push_back(std::move(**popped));
  }
  VirtioNetHdr hdr;
  std::memcpy(&hdr, rx_buf_.data(), kHdrSize);
  auto frame = std::span<const std::byte>(rx_buf_).subspan(kHdrSize, packet_len - kHdrSize);
  auto entries = write_rx_frame(*mem_, rx_chains_, hdr, frame, mergeable);
  if (!entries.ok()) {
    fail_ring(kRxQueue, entries.error());
    return Delivery::kRingError;
  }
  rx_chains_.erase(rx_chains_.begin(),
                   rx_chains_.begin() + static_cast<std::ptrdiff_t>(entries->size()));
  rx_chains_gap_ = rx_chains_gap_ && !rx_chains_.empty();
  if (!append_used(*entries)) {
    return Delivery::kRingError;
  }
  stats_.rx_frames.fetch_add(1, std::memory_order_relaxed);
  stats_.rx_bytes.fetch_add(frame.size(), std::memory_order_relaxed);
  rx_pending_ = 0;
  return Delivery::kDelivered;
}

bool NetDevice::append_used(std::span<const UsedEntry> entries) {
  if (rx_used_.size() + entries.size() > rx_->size() && !flush_rx()) {
    return false;
  }
  rx_used_.insert(rx_used_.end(), entries.begin(), entries.end());
  return true;
}

bool NetDevice::flush_rx() {
  if (rx_used_.empty()) {
    return true;
  }
  auto r = publish_used(*rx_, *mem_, rx_used_);
  rx_used_.clear();
  if (!r.ok()) {
    fail_ring(kRxQueue, r.error());
    return false;
  }
  return notify(*rx_, kRxQueue);
}

bool NetDevice::notify(Virtqueue& queue, uint16_t index) {
  auto wanted = queue.should_notify(*mem_);
  if (!wanted.ok()) {
    fail_ring(index, wanted.error());
    return false;
  }
  if (*wanted) {
    irq_->notify_queue(index);
  }
  return true;
}

void NetDevice::arm_wait(bool write) {
  bool& armed = write ? write_armed_ : read_armed_;
  if (armed || !watch_) {
    return;
  }
  armed = true;
  using Wait = boost::asio::posix::stream_descriptor::wait_type;
  watch_->async_wait(
      write ? Wait::wait_write : Wait::wait_read,
      [weak = weak_from_this(), gen = generation_, write](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (self == nullptr || gen != self->generation_) {
          return;
        }
        (write ? self->write_armed_ : self->read_armed_) = false;
        if (ec) {
          spdlog::warn("virtio-net: waiting for the backend: {}", ec.message());
          return;
        }
        if (write) {
          self->process_tx();
        } else {
          self->process_rx();
        }
      });
}

void NetDevice::post_again(bool tx) {
  boost::asio::post(*loop_, [weak = weak_from_this(), gen = generation_, tx] {
    auto self = weak.lock();
    if (self == nullptr || gen != self->generation_) {
      return;
    }
    if (tx) {
      self->process_tx();
    } else {
      self->process_rx();
    }
  });
}

void NetDevice::fail_ring(uint16_t index, const Error& error) {
  spdlog::warn("virtio-net: queue {} broken, device needs reset: {}", index, error.to_string());
  stop();
  active_ = false;
  irq_->set_needs_reset();
}

void NetDevice::stop() {
  ++generation_;
  watch_.reset();  // closes the dup and cancels its waits
  read_armed_ = false;
  write_armed_ = false;
}

}  // namespace petrel::virtio

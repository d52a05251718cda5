// NetDevice: quiesce and the queue indices for snapshots (net_device.h).
#include <spdlog/spdlog.h>
#include <boost/system/error_code.hpp>

#include "virtio/net_device.h"

namespace petrel::virtio {

void NetDevice::quiesce(std::function<void()> idle) {
  quiesced_ = true;
  ++generation_;  // posted retries and backend waits already queued become no-ops
  if (watch_) {
    boost::system::error_code ec;
    watch_->cancel(ec);
  }
  read_armed_ = false;
  write_armed_ = false;
  if (active_) {
    release_rx_chains();
  }
  idle();
}

void NetDevice::unquiesce() {
  if (!quiesced_) {
    return;
  }
  quiesced_ = false;
  if (active_) {
    process_rx();
    process_tx();
  }
}

void NetDevice::release_rx_chains() {
  if (!rx_) {
    return;
  }
  if (!flush_rx()) {
    return;  // the ring broke: the device is stopped and needs a reset
  }
  if (rx_chains_.empty()) {
    return;
  }
  if (!rx_chains_gap_) {
    // They are the last chains popped: rewind so that the next pop returns them again.
    const auto n = static_cast<uint16_t>(rx_chains_.size());
    rx_->set_indices(static_cast<uint16_t>(rx_->next_avail() - n), rx_->next_used());
  } else {
    spdlog::debug("virtio-net: quiesce returns {} held receive chains empty", rx_chains_.size());
    for (const DescriptorChain& chain : rx_chains_) {
      rx_used_.push_back(net::UsedEntry{chain.head(), 0});
    }
    rx_chains_.clear();
    rx_chains_gap_ = false;
    flush_rx();
    return;
  }
  rx_chains_.clear();
  rx_chains_gap_ = false;
}

std::vector<std::optional<QueueIndices>> NetDevice::queue_indices() const {
  std::vector<std::optional<QueueIndices>> out(2);
  if (rx_) {
    out[net::kRxQueue] = QueueIndices{rx_->next_avail(), rx_->next_used()};
  }
  if (tx_) {
    out[net::kTxQueue] = QueueIndices{tx_->next_avail(), tx_->next_used()};
  }
  return out;
}

}  // namespace petrel::virtio

// TransportCore, event-loop side: kick waits, stop, running work on the loop, and the
// VirtioInterrupt calls devices make (transport_core.h has the threading contract).
#include <future>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "virtio/transport_core.h"
#include "virtio/virtio_spec.h"

namespace petrel::virtio {

// --- event loop side ---

void TransportCore::arm_kick(uint16_t index) {
  Queue& q = queues_[index];
  if (!q.waiter) {
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  q.waiter->async_wait(boost::asio::posix::descriptor_base::wait_read,
                       [this, alive, index](boost::system::error_code ec) {
                         if (ec || alive.expired() || stopped_) {
                           if (ec && ec != boost::asio::error::operation_aborted) {
                             spdlog::warn("virtio: kick wait of queue {}: {}", index, ec.message());
                           }
                           return;
                         }
                         if (auto r = queues_[index].kick.consume(); !r) {
                           spdlog::warn("virtio: kick of queue {}: {}", index,
                                        r.error().to_string());
                         }
                         if (quiesced_) {
                           kicked_[index] = true;
                         } else if (active_) {
                           device_->process_queue(index);
                         }
                         arm_kick(index);
                       });
}

void TransportCore::stop() {
  run_on_loop([this] { stop_on_loop(); });
}

void TransportCore::stop_on_loop() {
  if (stopped_.exchange(true)) {
    return;
  }
  for (Queue& q : queues_) {
    q.waiter.reset();  // closes the dup and aborts its wait
  }
  if (activated_) {
    device_->reset();
    activated_ = false;
    active_ = false;
  }
}

void TransportCore::run_on_loop(const std::function<void()>& fn) {
  if (io_.get_executor().running_in_this_thread() || io_.stopped()) {
    fn();
    return;
  }
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  boost::asio::post(io_, [&fn, &done] {
    fn();
    done.set_value();
  });
  finished.wait();
}

void TransportCore::deliver_if_current(InterruptKind kind, uint16_t queue, uint64_t epoch) {
  {
    std::lock_guard lock(mutex_);
    if (epoch != epoch_) {
      return;
    }
  }
  deliver_(kind, queue);
}

void TransportCore::notify_queue(uint16_t index) {
  if (!active_) {
    return;
  }
  {
    std::lock_guard lock(mutex_);
    if (active_epoch_ != epoch_) {
      return;
    }
    isr_ |= kInterruptUsedBuffer;
  }
  deliver_(InterruptKind::kQueue, index);
}

void TransportCore::notify_config() {
  if (!active_) {
    return;
  }
  {
    std::lock_guard lock(mutex_);
    if (active_epoch_ != epoch_) {
      return;
    }
    isr_ |= kInterruptConfigChange;
  }
  deliver_(InterruptKind::kConfig, 0);
}

void TransportCore::set_needs_reset() {
  if (!activated_) {
    return;
  }
  bool send = false;
  {
    std::lock_guard lock(mutex_);
    if (active_epoch_ != epoch_) {
      return;
    }
    status_ |= kStatusDeviceNeedsReset;
    send = (status_ & kStatusDriverOk) != 0;
    if (send) {
      isr_ |= kInterruptConfigChange;
    }
  }
  if (send) {
    deliver_(InterruptKind::kConfig, 0);
  }
}

}  // namespace petrel::virtio

// VmController: the memory balloon (vm_controller.h; docs/api.md "/v1/balloon"). The device's
// host side is thread-safe, so these only need the controller's mutex to keep vm_ alive.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/vm_controller.h"

namespace petrel {

namespace {

Error no_balloon() {
  return Error(ErrorCode::kNotFound,
               "the VM has no balloon device (start it with --balloon or \"balloon\" in the "
               "config)");
}

}  // namespace

Result<virtio::BalloonDevice*> VmController::balloon_locked() const {
  if (!config_.balloon) {
    return no_balloon();
  }
  if (!vm_ || vm_->balloon() == nullptr) {
    return Error(ErrorCode::kState,
                 fmt::format("the VM is {}: no balloon to talk to", to_string(lifecycle_.state())));
  }
  return vm_->balloon();
}

Result<BalloonInfo> VmController::balloon() const {
  Lock lock(mutex_);
  PETREL_TRY_ASSIGN(virtio::BalloonDevice * device, balloon_locked());
  BalloonInfo info;
  info.present = true;
  info.target_bytes = uint64_t{device->target_pages()} * kBalloonPageBytes;
  info.actual_bytes = uint64_t{device->actual_pages()} * kBalloonPageBytes;
  info.memory_bytes = config_.memory_bytes;
  info.deflate_on_oom = config_.balloon->deflate_on_oom;
  info.stats_interval_s = config_.balloon->stats_interval_s;
  info.free_page_reporting = config_.balloon->free_page_reporting;
  return info;
}

Result<void> VmController::set_balloon_target(uint64_t target_bytes) {
  Lock lock(mutex_);
  PETREL_TRY_ASSIGN(virtio::BalloonDevice * device, balloon_locked());
  PETREL_TRY(check_balloon_target(target_bytes, config_.memory_bytes));
  const auto pages = static_cast<uint32_t>(target_bytes / kBalloonPageBytes);
  device->set_target_pages(pages);
  // A reboot or a restore of this config starts from the latest target.
  config_.balloon->target_bytes = target_bytes;
  events_.publish("balloon", {{"target_bytes", target_bytes}});
  spdlog::info("VM '{}': balloon target {} MiB", config_.name, target_bytes >> 20);
  return {};
}

Result<BalloonStats> VmController::balloon_stats() const {
  Lock lock(mutex_);
  PETREL_TRY_ASSIGN(virtio::BalloonDevice * device, balloon_locked());
  const virtio::BalloonStats got = device->stats();
  using Tag = virtio::BalloonStats::Tag;
  BalloonStats out;
  out.swap_in = got.value(Tag::kSwapIn);
  out.swap_out = got.value(Tag::kSwapOut);
  out.major_faults = got.value(Tag::kMajorFaults);
  out.minor_faults = got.value(Tag::kMinorFaults);
  out.free_memory = got.value(Tag::kMemFree);
  out.total_memory = got.value(Tag::kMemTotal);
  out.available_memory = got.value(Tag::kAvailable);
  out.disk_caches = got.value(Tag::kCaches);
  out.hugetlb_allocations = got.value(Tag::kHugetlbAllocations);
  out.hugetlb_failures = got.value(Tag::kHugetlbFailures);
  if (got.received) {
    out.updated_at = got.received_at;
  }
  out.unknown_tags = got.unknown_tags;
  return out;
}

}  // namespace petrel

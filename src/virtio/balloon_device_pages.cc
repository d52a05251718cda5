// BalloonDevice: inflate, deflate and free page report requests, and what is ignored
// (balloon_device.h). Every PFN and length here is guest-controlled.
#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/balloon_device.h"
#include "virtio/virtio_spec.h"
#include "vmm/base/state_codec.h"

namespace petrel::virtio {

namespace {

constexpr size_t kPfnChunk = 1024;  // PFNs copied out of guest memory at a time

}  // namespace

// A run of consecutive guest pages inside one region, acted on with one discard.
struct BalloonDevice::PfnRun {
  BalloonPageMap::Location start;
  uint64_t count = 0;
};

void BalloonDevice::handle_pfns(const DescriptorChain& chain, bool inflate) {
  ChainReader reader(memory_, chain);
  const uint64_t readable = reader.remaining();
  const uint64_t looked_at = std::min<uint64_t>(readable, kMaxPfnBytesPerChain) / 4 * 4;
  if (readable > looked_at) {
    const uint64_t past = readable - looked_at;
    ignore(past / 4 + (past % 4 != 0 ? 1 : 0),
           fmt::format("{} bytes of a {}-byte PFN array past the per-request limit or not a "
                       "whole PFN",
                       past, readable));
  }
  const uint64_t held_before = pages_.count();
  std::array<uint32_t, kPfnChunk> pfns{};
  PfnRun run;
  uint64_t left = looked_at / 4;
  uint64_t outside = 0;
  std::optional<uint64_t> first_outside;
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, kPfnChunk));
    if (!reader.read(std::as_writable_bytes(std::span(pfns.data(), n))).ok()) {
      break;  // cannot happen: the chain was checked and `left` counts its bytes
    }
    left -= n;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t pfn = static_cast<uint32_t>(get_le(reinterpret_cast<std::byte*>(&pfns[i]), 4));
      auto at = pages_.locate(pfn);
      if (!at) {
        ++outside;
        first_outside = first_outside.value_or(pfn);
        continue;
      }
      if (run.count > 0 && at->region == run.start.region &&
          at->page == run.start.page + run.count) {
        ++run.count;
        continue;
      }
      flush_run(run, inflate);
      run = PfnRun{*at, 1};
    }
  }
  flush_run(run, inflate);
  if (outside > 0) {
    ignore(outside, fmt::format("{} {} PFNs outside guest RAM (first {:#x})", outside,
                                inflate ? "inflate" : "deflate", *first_outside));
  }
  if (!inflate) {
    account_unrequested(held_before, held_before - pages_.count());
  }
}

void BalloonDevice::account_unrequested(uint64_t held_before, uint64_t taken_back) {
  const uint64_t target = target_pages();
  const uint64_t asked = held_before > target ? held_before - target : 0;
  if (taken_back <= asked) {
    return;
  }
  const uint64_t unrequested = taken_back - asked;
  counters_.oom_deflated.fetch_add(unrequested, std::memory_order_relaxed);
  if ((features_ & feature_bit(kFDeflateOnOom)) != 0) {
    spdlog::info(
        "virtio-balloon: the guest took back {} pages the host did not release "
        "(deflate on OOM); the balloon holds {} of a {}-page target",
        unrequested, pages_.count(), target);
  } else if (!unrequested_warned_) {
    // 5.5.6.1: without F_DEFLATE_ON_OOM the driver must not do this. The pages are the
    // guest's again anyway (they were discarded and fault in as zeros); only say so once.
    spdlog::warn(
        "virtio-balloon: the guest took back {} pages below the target without "
        "VIRTIO_BALLOON_F_DEFLATE_ON_OOM (honoured; counted as oom_deflated)",
        unrequested);
    unrequested_warned_ = true;
  }
}

void BalloonDevice::flush_run(PfnRun& run, bool inflate) {
  if (run.count == 0) {
    return;
  }
  if (inflate) {
    // 5.5.6.2: the page may change from here until the inflate request is acknowledged.
    const GuestAddress addr = pages_.address(run.start);
    if (auto r = memory_.discard(addr, run.count * kPfnPageSize); !r.ok()) {
      counters_.discard_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("virtio-balloon: {}", r.error().to_string());
    }
    pages_.set(run.start.region, run.start.page, run.count, true);
    counters_.inflated.fetch_add(run.count, std::memory_order_relaxed);
  } else {
    // No F_MUST_TELL_HOST: nothing to do but forget the mark; the page faults in as zeros.
    pages_.set(run.start.region, run.start.page, run.count, false);
    counters_.deflated.fetch_add(run.count, std::memory_order_relaxed);
  }
  run.count = 0;
}

void BalloonDevice::handle_report(const DescriptorChain& chain) {
  for (const DescriptorSegment& seg : chain.segments()) {
    const uint64_t start = (seg.addr.value() + kPfnPageSize - 1) / kPfnPageSize * kPfnPageSize;
    const uint64_t end = (seg.addr.value() + seg.len) / kPfnPageSize * kPfnPageSize;
    if (end <= start) {
      continue;  // no whole page in this range
    }
    if (auto r = memory_.discard(GuestAddress(start), end - start); !r.ok()) {
      counters_.discard_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("virtio-balloon: free page report: {}", r.error().to_string());
      continue;
    }
    counters_.reported.fetch_add((end - start) / kPfnPageSize, std::memory_order_relaxed);
  }
}

void BalloonDevice::ignore(uint64_t pfns, const std::string& why) {
  counters_.ignored.fetch_add(pfns, std::memory_order_relaxed);
  if (ignores_logged_ < kMaxLoggedIgnores) {
    spdlog::warn("virtio-balloon: ignored {}", why);
  } else if (ignores_logged_ == kMaxLoggedIgnores) {
    spdlog::warn("virtio-balloon: ignored PFNs: further messages suppressed (see counters)");
  }
  if (ignores_logged_ <= kMaxLoggedIgnores) {
    ++ignores_logged_;
  }
}

}  // namespace petrel::virtio

// Fakes for the migration tests: a MigrationSource over a real anonymous GuestMemory whose
// "guest" is a thread writing pages (and remembering which, as the dirty log), and a
// MigrationSink with its own GuestMemory that records what the receiver did to it.
#pragma once

#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "vmm/migration_protocol.h"
#include "vmm/migration_sink.h"
#include "vmm/migration_source.h"

namespace petrel::testing {

inline constexpr uint64_t kMigPage = 4096;

// Two regions: 8 MiB at 0 and 2 MiB at 4 GiB.
inline GuestMemory make_migration_memory() {
  std::array specs{GuestRegionSpec{GuestAddress(0), 8 << 20},
                   GuestRegionSpec{GuestAddress(uint64_t{4} << 30), 2 << 20}};
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  return std::move(mem).value();
}

class FakeSource : public MigrationSource {
 public:
  FakeSource() : memory_(make_migration_memory()) {
    for (const GuestRegion& r : memory_.regions()) {
      dirty_.emplace_back((r.size() / kMigPage + 63) / 64, 0);
    }
  }
  ~FakeSource() override { stop_writer(); }

  // Writes `value` over page `page` of `region` and records it as dirty.
  void write_page(size_t region, uint64_t page, uint8_t value) {
    std::lock_guard lock(mutex_);
    if (paused_.load()) {
      return;  // a parked guest writes nothing
    }
    std::memset(memory_.regions()[region].host_base() + page * kMigPage, value, kMigPage);
    dirty_[region][page / 64] |= uint64_t{1} << (page % 64);
  }
  // A guest that writes pages of region 0 (and sometimes 1) until paused or stopped;
  // `pages_per_ms` bounds its rate (0 = as fast as it can).
  void start_writer(uint64_t pages_per_ms) {
    writer_ = std::thread([this, pages_per_ms] {
      std::mt19937_64 rng(42);
      uint64_t n = 0;
      while (!stop_.load()) {
        {
          size_t region = (n % 5 == 0) ? 1 : 0;
          uint64_t pages = memory_.regions()[region].size() / kMigPage;
          write_page(region, rng() % pages, static_cast<uint8_t>(1 + n % 255));
          ++n;
          writes_.store(n);
        }
        if (pages_per_ms != 0 && n % pages_per_ms == 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    });
  }
  void stop_writer() {
    stop_.store(true);
    if (writer_.joinable()) {
      writer_.join();
    }
  }

  std::string config_json() const override { return R"({"vcpus":1})"; }
  const GuestMemory& memory() const override { return memory_; }
  PageSkip skipped_pages() const override { return skip_; }
  // As DirtyTracker::start: writes from before are forgotten.
  Result<void> start_dirty_log() override {
    std::lock_guard lock(mutex_);
    for (auto& words : dirty_) {
      std::fill(words.begin(), words.end(), 0);
    }
    ++starts;
    logging = true;
    return ok();
  }
  Result<std::vector<RegionDirtyPages>> collect_dirty() override {
    ++collects;
    std::lock_guard lock(mutex_);
    std::vector<RegionDirtyPages> out;
    for (size_t i = 0; i < dirty_.size(); ++i) {
      const GuestRegion& r = memory_.regions()[i];
      out.push_back({r.start(), r.size() / kMigPage, std::exchange(dirty_[i], {})});
      dirty_[i].assign(out.back().bitmap.size(), 0);
    }
    return out;
  }
  void stop_dirty_log() override { logging = false; }
  Result<void> pause() override {
    std::lock_guard lock(mutex_);  // a write in progress finishes first
    paused_.store(true);
    ++pauses;
    return ok();
  }
  Result<std::vector<StateSection>> final_state() override {
    if (fail_final_state) {
      return Error(ErrorCode::kKvm, "injected final_state failure");
    }
    return state;
  }
  void resume() override {
    std::lock_guard lock(mutex_);
    ++resumes;
    paused_.store(false);
  }
  bool paused() const { return paused_.load(); }
  uint64_t writes() const { return writes_.load(); }

  PageSkip skip_;
  std::vector<StateSection> state{{"cpu0", {std::byte{1}, std::byte{2}}}, {"clock", {}}};
  bool fail_final_state = false;
  int starts = 0, collects = 0, pauses = 0, resumes = 0;
  bool logging = false;

 private:
  GuestMemory memory_;
  std::mutex mutex_;
  std::vector<std::vector<uint64_t>> dirty_;
  std::thread writer_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::atomic<uint64_t> writes_{0};
};

class FakeSink : public MigrationSink {
 public:
  Result<void> prepare(const std::string& config_json, const MemoryLayout& layout) override {
    ++prepares;
    config = config_json;
    if (fail_prepare) {
      return Error(ErrorCode::kInvalidArgument, "injected prepare failure");
    }
    (void)layout;
    memory_.emplace(make_migration_memory());
    return ok();
  }
  GuestMemory& memory() override { return *memory_; }
  Result<void> commit(std::vector<StateSection> sections) override {
    ++commits;
    state = std::move(sections);
    if (fail_commit) {
      return Error(ErrorCode::kKvm, "injected commit failure");
    }
    return ok();
  }
  void discard() override { ++discards; }

  bool has_memory() const { return memory_.has_value(); }
  std::string config;
  std::vector<StateSection> state;
  bool fail_prepare = false, fail_commit = false;
  int prepares = 0, commits = 0, discards = 0;

 private:
  std::optional<GuestMemory> memory_;
};

// True when both memories hold the same bytes.
inline bool same_memory(const GuestMemory& a, const GuestMemory& b) {
  if (a.regions().size() != b.regions().size()) {
    return false;
  }
  for (size_t i = 0; i < a.regions().size(); ++i) {
    if (a.regions()[i].size() != b.regions()[i].size() ||
        std::memcmp(a.regions()[i].host_base(), b.regions()[i].host_base(),
                    a.regions()[i].size()) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace petrel::testing

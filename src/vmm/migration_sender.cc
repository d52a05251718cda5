#include "vmm/migration_sender.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/migration_protocol.h"

namespace petrel {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kPage = kMigrationPageSize;
// Pages per MEMORY frame: 16 MiB of data, well inside the frame limit with run headers.
constexpr uint64_t kBatchPages = 4096;

// One bitmap per region, DirtyBitmap word layout.
using PageSet = std::vector<std::vector<uint64_t>>;

uint64_t count_pages(const PageSet& set) {
  uint64_t n = 0;
  for (const auto& words : set) {
    for (uint64_t w : words) {
      n += static_cast<uint64_t>(std::popcount(w));
    }
  }
  return n;
}

bool is_zero_page(const std::byte* p) {
  static const std::array<std::byte, kPage> kZero{};
  return std::memcmp(p, kZero.data(), kPage) == 0;
}

void remove_skipped(PageSet& set, const PageSkip& skip) {
  for (size_t r = 0; r < set.size() && r < skip.regions.size(); ++r) {
    for (size_t w = 0; w < set[r].size() && w < skip.regions[r].size(); ++w) {
      set[r][w] &= ~skip.regions[r][w];
    }
  }
}

Error peer_error(FrameType type, std::span<const std::byte> payload) {
  std::string text(reinterpret_cast<const char*>(payload.data()), payload.size());
  if (type == FrameType::kCancel) {
    return migration_cancelled_error("the destination cancelled the migration");
  }
  return Error(ErrorCode::kState, "the destination refused: " + text);
}

Error unexpected(FrameType type, std::string_view phase) {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("migration stream: unexpected {} frame during {}",
                           frame_type_name(static_cast<uint32_t>(type)), phase));
}

}  // namespace

// One run of the sender: the state the phases share.
class MigrationSender::Session {
 public:
  Session(MigrationSender& owner, MigrationSource& source, const MigrationOptions& options)
      : owner_(owner),
        source_(source),
        options_(options),
        deadline_(Clock::now() + options.timeout) {}

  Result<MigrationResult> migrate(const MigrationAddress& address);
  // The peer's own reason when it sent one (ERROR or CANCEL) before the connection broke.
  Error explain(Error error);
  // Undoes what migrate() did to the source and tells the peer, after a failure.
  void abort(const Error& error);

 private:
  milliseconds remaining() const {
    return std::max(milliseconds(0),
                    std::chrono::duration_cast<milliseconds>(deadline_ - Clock::now()));
  }
  Result<void> handshake();
  Result<FrameType> expect(std::initializer_list<FrameType> wanted, std::string_view phase);
  Result<void> send_round(uint32_t round, const PageSet& pages);
  Result<void> throttle(Clock::time_point round_start, uint64_t round_bytes);
  Result<PageSet> collect_dirty();
  PageSet nonzero_pages() const;

  MigrationSender& owner_;
  MigrationSource& source_;
  const MigrationOptions& options_;
  Clock::time_point deadline_;
  std::optional<MigrationChannel> channel_;
  PageSkip skip_;
  std::vector<std::byte> payload_;
  bool logging_ = false;
  bool paused_ = false;
  uint64_t pages_sent_ = 0;
};

Result<FrameType> MigrationSender::Session::expect(std::initializer_list<FrameType> wanted,
                                                   std::string_view phase) {
  PETREL_TRY_ASSIGN(FrameType type, channel_->recv_frame(payload_, remaining()));
  if (type == FrameType::kError || type == FrameType::kCancel) {
    return peer_error(type, payload_);
  }
  if (std::find(wanted.begin(), wanted.end(), type) == wanted.end()) {
    return unexpected(type, phase);
  }
  return type;
}

Result<void> MigrationSender::Session::handshake() {
  MigrationHello hello{kMigrationVersion, kMigrationPageSize, "petrel " PETREL_VERSION};
  PETREL_TRY(channel_->send_frame(FrameType::kHello, encode_hello(hello), remaining()));
  PETREL_TRY(expect({FrameType::kHelloAck}, "the handshake"));
  PETREL_TRY_ASSIGN(MigrationHello ack, decode_hello(payload_));
  if (ack.version != kMigrationVersion || ack.page_size != kMigrationPageSize) {
    return Error(ErrorCode::kUnsupported,
                 fmt::format("the destination answered with migration protocol version {} "
                             "(page size {}); this petrel speaks version {} (page size {})",
                             ack.version, ack.page_size, kMigrationVersion, kMigrationPageSize));
  }
  MigrationConfig config{source_.config_json(), layout_of(source_.memory())};
  PETREL_TRY(channel_->send_frame(FrameType::kConfig, encode_config(config), remaining()));
  PETREL_TRY(expect({FrameType::kReady}, "the configuration"));
  return ok();
}

PageSet MigrationSender::Session::nonzero_pages() const {
  PageSet set;
  for (const GuestRegion& region : source_.memory().regions()) {
    uint64_t pages = region.size() / kPage;
    std::vector<uint64_t> words((pages + 63) / 64);
    for (uint64_t p = 0; p < pages; ++p) {
      if (!is_zero_page(region.host_base() + p * kPage)) {
        words[p / 64] |= uint64_t{1} << (p % 64);
      }
    }
    set.push_back(std::move(words));
  }
  return set;
}

Result<PageSet> MigrationSender::Session::collect_dirty() {
  PETREL_TRY_ASSIGN(auto dirty, source_.collect_dirty());
  const auto& regions = source_.memory().regions();
  if (dirty.size() != regions.size()) {
    return Error(ErrorCode::kInternal, fmt::format("the dirty log has {} regions, memory {}",
                                                   dirty.size(), regions.size()));
  }
  PageSet set;
  for (size_t r = 0; r < dirty.size(); ++r) {
    std::vector<uint64_t> words = std::move(dirty[r].bitmap);
    words.resize((regions[r].size() / kPage + 63) / 64);  // ignore bits past the region
    if (uint64_t tail = (regions[r].size() / kPage) % 64; tail != 0 && !words.empty()) {
      words.back() &= (uint64_t{1} << tail) - 1;
    }
    set.push_back(std::move(words));
  }
  // Dirty pages are always sent, skipped or not: a page given to the balloon at the start
  // may have been deflated and written since (and a discarded page that is dirty reads as
  // zeros, which is what the destination then gets).
  return set;
}

Result<void> MigrationSender::Session::throttle(Clock::time_point round_start,
                                                uint64_t round_bytes) {
  if (options_.bandwidth_limit == 0) {
    return ok();
  }
  auto due =
      round_start + std::chrono::microseconds(round_bytes * 1000000 / options_.bandwidth_limit);
  while (Clock::now() < due) {
    if (owner_.cancelled_.load()) {
      return migration_cancelled_error("migration");
    }
    std::this_thread::sleep_until(std::min(due, Clock::now() + kCancelPollInterval));
  }
  return ok();
}

Result<void> MigrationSender::Session::send_round(uint32_t round, const PageSet& pages) {
  const auto& regions = source_.memory().regions();
  Clock::time_point start = Clock::now();
  uint64_t start_bytes = channel_->bytes_sent();
  std::vector<std::byte> round_word = encode_round(round);
  std::vector<std::array<std::byte, kRunHeaderBytes>> headers;
  std::vector<iovec> iov;
  uint64_t batch = 0;
  auto flush = [&]() -> Result<void> {
    if (batch == 0) {
      return ok();
    }
    PETREL_TRY(channel_->send_pages(FrameType::kMemory, iov, remaining()));
    if (channel_->has_input()) {  // the destination gives up (it says nothing else here)
      PETREL_TRY(expect({}, "pre-copy"));
    }
    pages_sent_ += batch;
    owner_.update([&](MigrationProgress& p) {
      p.pages_sent = pages_sent_;
      p.bytes_sent = channel_->bytes_sent();
    });
    batch = 0;
    PETREL_TRY(throttle(start, channel_->bytes_sent() - start_bytes));
    return ok();
  };
  auto reset = [&] {
    headers.clear();
    headers.reserve(kBatchPages);  // iov points into it: it must not reallocate
    iov.assign(1, iovec{round_word.data(), round_word.size()});
  };
  reset();
  for (size_t r = 0; r < pages.size(); ++r) {
    uint64_t limit = regions[r].size() / kPage;
    uint64_t p = 0;
    while (p < limit) {
      if (((pages[r][p / 64] >> (p % 64)) & 1) == 0) {
        ++p;
        continue;
      }
      uint64_t first = p;
      while (p < limit && p - first < kBatchPages - batch && ((pages[r][p / 64] >> (p % 64)) & 1)) {
        ++p;
      }
      auto count = static_cast<uint32_t>(p - first);
      headers.push_back(encode_run_header(static_cast<uint32_t>(r), first, count));
      iov.push_back(iovec{headers.back().data(), kRunHeaderBytes});
      iov.push_back(iovec{regions[r].host_base() + first * kPage, count * kPage});
      batch += count;
      if (batch == kBatchPages) {
        PETREL_TRY(flush());
        reset();
      }
    }
  }
  PETREL_TRY(flush());
  return channel_->send_frame(FrameType::kRoundEnd, encode_round(round), remaining());
}

Result<MigrationResult> MigrationSender::Session::migrate(const MigrationAddress& address) {
  Clock::time_point start = Clock::now();
  owner_.update([](MigrationProgress& p) { p.phase = MigrationPhase::kConnecting; });
  PETREL_TRY_ASSIGN(UniqueFd fd, connect(address, remaining(), &owner_.cancelled_));
  PETREL_TRY_ASSIGN(MigrationChannel channel, MigrationChannel::create(std::move(fd)));
  channel_.emplace(std::move(channel));
  owner_.set_channel(&*channel_);
  PETREL_TRY(std::move(handshake()).context("handshake"));

  owner_.update([](MigrationProgress& p) { p.phase = MigrationPhase::kPrecopy; });
  skip_ = source_.skipped_pages();
  PETREL_TRY(source_.start_dirty_log());
  logging_ = true;
  PageSet pages = nonzero_pages();
  remove_skipped(pages, skip_);
  uint32_t round = 0;
  for (;;) {
    Clock::time_point round_start = Clock::now();
    uint64_t round_start_bytes = channel_->bytes_sent();
    PETREL_TRY(std::move(send_round(round, pages)).context(fmt::format("round {}", round)));
    PETREL_TRY_ASSIGN(pages, collect_dirty());
    double seconds =
        std::max(1e-6, std::chrono::duration<double>(Clock::now() - round_start).count());
    uint64_t bandwidth = std::max<uint64_t>(
        1, static_cast<uint64_t>((channel_->bytes_sent() - round_start_bytes) / seconds));
    uint64_t dirty_bytes = count_pages(pages) * kPage;
    double expected_s = static_cast<double>(dirty_bytes) / static_cast<double>(bandwidth);
    auto expected_ms = static_cast<uint64_t>(expected_s * 1000);
    ++round;
    owner_.update([&](MigrationProgress& p) {
      p.round = round;
      p.remaining_dirty_bytes = dirty_bytes;
      p.dirty_rate_bytes_per_s = static_cast<uint64_t>(dirty_bytes / seconds);
      p.bandwidth_bytes_per_s = bandwidth;
      p.expected_downtime_ms = expected_ms;
    });
    spdlog::debug("migration: round {} done, {} dirty bytes, {} B/s, expected downtime {} ms",
                  round - 1, dirty_bytes, bandwidth, expected_ms);
    if (expected_s <= std::chrono::duration<double>(options_.downtime).count() ||
        round >= std::max<uint32_t>(1, options_.max_rounds)) {
      break;
    }
  }

  owner_.update([](MigrationProgress& p) { p.phase = MigrationPhase::kStopAndCopy; });
  PETREL_TRY(std::move(source_.pause()).context("pausing the source"));
  paused_ = true;
  Clock::time_point paused_at = Clock::now();
  PETREL_TRY_ASSIGN(PageSet last, collect_dirty());
  for (size_t r = 0; r < pages.size(); ++r) {
    for (size_t w = 0; w < pages[r].size(); ++w) {
      pages[r][w] |= last[r][w];
    }
  }
  PETREL_TRY(std::move(send_round(round, pages)).context(fmt::format("final round {}", round)));
  PETREL_TRY_ASSIGN(auto sections, source_.final_state());
  PETREL_TRY_ASSIGN(auto state, encode_state(sections));
  PETREL_TRY(channel_->send_frame(FrameType::kState, state, remaining()));
  PETREL_TRY(channel_->send_frame(FrameType::kDone, {}, remaining()));
  PETREL_TRY(std::move(expect({FrameType::kAck}, "the final acknowledgement"))
                 .context("waiting for the destination to restore the VM"));
  source_.stop_dirty_log();
  logging_ = false;

  Clock::time_point end = Clock::now();
  MigrationResult result;
  result.total = std::chrono::duration_cast<milliseconds>(end - start);
  result.downtime = std::chrono::duration_cast<milliseconds>(end - paused_at);
  result.rounds = round + 1;
  result.bytes_sent = channel_->bytes_sent();
  result.pages_sent = pages_sent_;
  owner_.update([&](MigrationProgress& p) {
    p.phase = MigrationPhase::kCompleted;
    p.round = result.rounds;
    p.bytes_sent = result.bytes_sent;
  });
  return result;
}

Error MigrationSender::Session::explain(Error error) {
  if (!channel_ || owner_.cancelled_.load() || !channel_->has_input()) {
    return error;
  }
  auto said = channel_->recv_frame(payload_, milliseconds(100));
  if (said.ok() && (*said == FrameType::kError || *said == FrameType::kCancel)) {
    return peer_error(*said, payload_);
  }
  return error;
}

void MigrationSender::Session::abort(const Error& error) {
  if (logging_) {
    source_.stop_dirty_log();
  }
  if (paused_) {
    source_.resume();
  }
  if (channel_) {
    if (is_migration_cancelled(error)) {
      channel_->send_farewell(FrameType::kCancel, "");
    } else {
      channel_->send_farewell(FrameType::kError, error.to_string());
    }
  }
  owner_.set_channel(nullptr);
}

Result<MigrationResult> MigrationSender::run(MigrationSource& source,
                                             const MigrationAddress& address,
                                             const MigrationOptions& options) {
  if (used_.exchange(true)) {
    return Error(ErrorCode::kState, "a MigrationSender runs once");
  }
  {
    std::lock_guard lock(mutex_);
    started_ = Clock::now();
  }
  Session session(*this, source, options);
  auto result = session.migrate(address);
  if (result.ok()) {
    set_channel(nullptr);
    return result;
  }
  if (!is_migration_cancelled(result.error())) {
    result = session.explain(std::move(result).error());
  }
  session.abort(result.error());
  MigrationPhase phase = MigrationPhase::kFailed;
  update([&](MigrationProgress& p) {
    phase = p.phase;
    p.phase = is_migration_cancelled(result.error()) ? MigrationPhase::kCancelled
                                                     : MigrationPhase::kFailed;
  });
  return std::move(result).context(
      fmt::format("migration to {} failed during {}", address.to_string(), to_string(phase)));
}

MigrationProgress MigrationSender::progress() const {
  std::lock_guard lock(mutex_);
  MigrationProgress out = progress_;
  if (channel_ != nullptr) {
    out.bytes_sent = channel_->bytes_sent();
  }
  if (used_.load()) {
    out.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - started_);
  }
  return out;
}

void MigrationSender::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_.store(true);
  if (channel_ != nullptr) {
    channel_->cancel();
  }
}

void MigrationSender::set_channel(MigrationChannel* channel) {
  std::lock_guard lock(mutex_);
  if (channel_ != nullptr) {  // keep the count once the connection is gone
    progress_.bytes_sent = channel_->bytes_sent();
  }
  channel_ = channel;
  if (channel != nullptr && cancelled_.load()) {
    channel->cancel();
  }
}

}  // namespace petrel

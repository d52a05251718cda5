#include "vmm/migration_receiver.h"

#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "vmm/migration_protocol.h"

namespace petrel {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

Error protocol_error(std::string message) {
  return Error(ErrorCode::kInvalidArgument, "migration stream: " + std::move(message));
}

}  // namespace

class MigrationReceiver::Session {
 public:
  Session(MigrationReceiver& owner, MigrationSink& sink, Clock::time_point deadline)
      : owner_(owner), sink_(sink), deadline_(deadline) {}

  Result<MigrationReceiveResult> receive(UniqueFd fd);
  void abort(const Error& error);

 private:
  milliseconds remaining() const {
    return std::max(milliseconds(0),
                    std::chrono::duration_cast<milliseconds>(deadline_ - Clock::now()));
  }
  // Receives a frame; ERROR and CANCEL from the source become errors.
  Result<FrameType> next();
  Result<void> handshake();
  Result<void> configure();
  Result<void> apply_memory();

  MigrationReceiver& owner_;
  MigrationSink& sink_;
  Clock::time_point deadline_;
  std::optional<MigrationChannel> channel_;
  std::vector<std::byte> payload_;
  MemoryLayout layout_;
  bool sink_touched_ = false;  // prepare() was called: discard() is owed on failure
  bool from_peer_ = false;     // the error came from the source: do not answer it
  uint32_t round_ = 0;
  uint64_t pages_ = 0;
};

Result<FrameType> MigrationReceiver::Session::next() {
  PETREL_TRY_ASSIGN(FrameType type, channel_->recv_frame(payload_, remaining()));
  if (type == FrameType::kCancel) {
    from_peer_ = true;
    return migration_cancelled_error("the source cancelled the migration");
  }
  if (type == FrameType::kError) {
    from_peer_ = true;
    return Error(ErrorCode::kState,
                 "the source gave up: " +
                     std::string(reinterpret_cast<const char*>(payload_.data()), payload_.size()));
  }
  return type;
}

Result<void> MigrationReceiver::Session::handshake() {
  PETREL_TRY_ASSIGN(FrameType type, next());
  if (type != FrameType::kHello) {
    return protocol_error(
        fmt::format("expected HELLO, got {}", frame_type_name(static_cast<uint32_t>(type))));
  }
  PETREL_TRY_ASSIGN(MigrationHello hello, decode_hello(payload_));
  if (hello.version != kMigrationVersion || hello.page_size != kMigrationPageSize) {
    return Error(
        ErrorCode::kUnsupported,
        fmt::format("the source speaks migration protocol version {} (page size {}); "
                    "this petrel speaks version {} (page size {})",
                    hello.version, hello.page_size, kMigrationVersion, kMigrationPageSize));
  }
  MigrationHello ack{kMigrationVersion, kMigrationPageSize, "petrel " PETREL_VERSION};
  return channel_->send_frame(FrameType::kHelloAck, encode_hello(ack), remaining());
}

Result<void> MigrationReceiver::Session::configure() {
  PETREL_TRY_ASSIGN(FrameType type, next());
  if (type != FrameType::kConfig) {
    return protocol_error(
        fmt::format("expected CONFIG, got {}", frame_type_name(static_cast<uint32_t>(type))));
  }
  PETREL_TRY_ASSIGN(MigrationConfig config, decode_config(payload_));
  layout_ = std::move(config.layout);
  sink_touched_ = true;
  PETREL_TRY(std::move(sink_.prepare(config.vm_config_json, layout_))
                 .context("preparing the destination VM"));
  if (!memory_matches(sink_.memory(), layout_)) {
    return Error(ErrorCode::kInvalidArgument,
                 "the destination VM's memory does not match the source's layout");
  }
  return channel_->send_frame(FrameType::kReady, {}, remaining());
}

Result<void> MigrationReceiver::Session::apply_memory() {
  const auto& regions = sink_.memory().regions();
  PETREL_TRY_ASSIGN(
      uint64_t pages, decode_memory(payload_, layout_, round_, [&](const PageRun& run) {
        std::memcpy(regions[run.region].host_base() + run.first_page * kMigrationPageSize,
                    run.data.data(), run.data.size());
      }));
  pages_ += pages;
  owner_.update([&](MigrationReceiveProgress& p) { p.pages_received = pages_; });
  return ok();
}

Result<MigrationReceiveResult> MigrationReceiver::Session::receive(UniqueFd fd) {
  Clock::time_point start = Clock::now();
  PETREL_TRY_ASSIGN(MigrationChannel channel, MigrationChannel::create(std::move(fd)));
  channel_.emplace(std::move(channel));
  owner_.set_channel(&*channel_);
  PETREL_TRY(std::move(handshake()).context("handshake"));
  PETREL_TRY(configure());
  owner_.update([](MigrationReceiveProgress& p) { p.phase = MigrationPhase::kPrecopy; });

  std::optional<std::vector<StateSection>> state;
  for (;;) {
    PETREL_TRY_ASSIGN(FrameType type, next());
    if (type == FrameType::kMemory && !state) {
      PETREL_TRY(apply_memory());
    } else if (type == FrameType::kRoundEnd && !state) {
      PETREL_TRY_ASSIGN(uint32_t round, decode_round(payload_));
      if (round != round_) {
        return protocol_error(fmt::format("ROUND_END {} while round {} is open", round, round_));
      }
      ++round_;
      owner_.update([&](MigrationReceiveProgress& p) { p.round = round_; });
    } else if (type == FrameType::kState && !state) {
      owner_.update([](MigrationReceiveProgress& p) { p.phase = MigrationPhase::kStopAndCopy; });
      PETREL_TRY_ASSIGN(state, decode_state(payload_));
    } else if (type == FrameType::kDone && state) {
      break;
    } else {
      return protocol_error(fmt::format("unexpected {} frame after round {}{}",
                                        frame_type_name(static_cast<uint32_t>(type)), round_,
                                        state ? " and STATE" : ""));
    }
  }
  PETREL_TRY(std::move(sink_.commit(std::move(*state))).context("restoring the VM"));
  sink_touched_ = false;  // committed: the VM is the sink's now
  PETREL_TRY(
      std::move(channel_->send_frame(FrameType::kAck, {}, remaining())).context("acknowledging"));
  MigrationReceiveResult result;
  result.total = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  result.rounds = round_;
  result.bytes_received = channel_->bytes_received();
  result.pages_received = pages_;
  owner_.update([&](MigrationReceiveProgress& p) {
    p.phase = MigrationPhase::kCompleted;
    p.bytes_received = result.bytes_received;
  });
  return result;
}

void MigrationReceiver::Session::abort(const Error& error) {
  if (sink_touched_) {
    sink_.discard();
  }
  if (channel_ && !from_peer_) {
    if (is_migration_cancelled(error)) {
      channel_->send_farewell(FrameType::kCancel, "");
    } else {
      channel_->send_farewell(FrameType::kError, error.to_string());
    }
  }
  owner_.set_channel(nullptr);
}

Result<MigrationReceiveResult> MigrationReceiver::run(MigrationSink& sink, UniqueFd fd,
                                                      milliseconds timeout) {
  if (used_.exchange(true)) {
    return Error(ErrorCode::kState, "a MigrationReceiver runs once");
  }
  Session session(*this, sink, Clock::now() + timeout);
  {
    std::lock_guard lock(mutex_);
    started_ = Clock::now();
    progress_.phase = MigrationPhase::kConnecting;
  }
  auto result = session.receive(std::move(fd));
  if (result.ok()) {
    set_channel(nullptr);
    return result;
  }
  session.abort(result.error());
  MigrationPhase phase = MigrationPhase::kFailed;
  update([&](MigrationReceiveProgress& p) {
    phase = p.phase;
    p.phase = is_migration_cancelled(result.error()) ? MigrationPhase::kCancelled
                                                     : MigrationPhase::kFailed;
  });
  return std::move(result).context(
      fmt::format("incoming migration failed during {}", to_string(phase)));
}

Result<MigrationReceiveResult> MigrationReceiver::run(MigrationSink& sink,
                                                      MigrationListener& listener,
                                                      milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  update([](MigrationReceiveProgress& p) { p.phase = MigrationPhase::kListening; });
  auto fd = listener.accept(timeout, &cancelled_);
  if (!fd.ok()) {
    used_.store(true);
    update([&](MigrationReceiveProgress& p) {
      p.phase =
          is_migration_cancelled(fd.error()) ? MigrationPhase::kCancelled : MigrationPhase::kFailed;
    });
    return std::move(fd).error().context("incoming migration: waiting for the source");
  }
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return run(sink, std::move(fd).value(), std::max(left, milliseconds(0)));
}

MigrationReceiveProgress MigrationReceiver::progress() const {
  std::lock_guard lock(mutex_);
  MigrationReceiveProgress out = progress_;
  if (channel_ != nullptr) {
    out.bytes_received = channel_->bytes_received();
  }
  if (used_.load()) {
    out.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - started_);
  }
  return out;
}

void MigrationReceiver::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_.store(true);
  if (channel_ != nullptr) {
    channel_->cancel();
  }
}

void MigrationReceiver::set_channel(MigrationChannel* channel) {
  std::lock_guard lock(mutex_);
  if (channel_ != nullptr) {  // keep the count once the connection is gone
    progress_.bytes_received = channel_->bytes_received();
  }
  channel_ = channel;
  if (channel != nullptr && cancelled_.load()) {
    channel->cancel();
  }
}

}  // namespace petrel

// Migration faults over real sockets: a broken, cancelled, silent or lying peer must leave
// the source running and intact (resumed if it was paused, dirty logging off) and the sink
// discarded, and each side must say what went wrong.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "scratch_dir.h"
#include "test_migration_fakes.h"
#include "vmm/base/state_codec.h"
#include "vmm/migration_receiver.h"
#include "vmm/migration_sender.h"

using namespace petrel;
using namespace std::chrono_literals;
using petrel::testing::FakeSink;
using petrel::testing::FakeSource;
using petrel::testing::ScratchDir;

namespace {

void check_source_intact(const FakeSource& source) {
  CHECK_FALSE(source.paused());
  CHECK_FALSE(source.logging);
  CHECK(source.resumes == source.pauses);
}

void check_sink_discarded(const FakeSink& sink) {
  CHECK(sink.commits <= 1);
  CHECK(sink.discards == (sink.prepares > 0 ? 1 : 0));
}

std::string text_of(const std::vector<std::byte>& payload) {
  return std::string(reinterpret_cast<const char*>(payload.data()), payload.size());
}

// The destination's end of a scripted conversation with a real MigrationSender.
struct ScriptedDest {
  explicit ScriptedDest(MigrationListener& listener) {
    auto fd = listener.accept(5s);
    REQUIRE(fd.ok());
    auto ch = MigrationChannel::create(std::move(fd).value());
    REQUIRE(ch.ok());
    channel.emplace(std::move(ch).value());
  }
  FrameType recv() {
    auto t = channel->recv_frame(payload, 5s);
    REQUIRE(t.ok());
    return *t;
  }
  // HELLO -> HELLO_ACK, CONFIG -> READY.
  void handshake() {
    REQUIRE(recv() == FrameType::kHello);
    REQUIRE(channel->send_frame(FrameType::kHelloAck, encode_hello({}), 1s).ok());
    REQUIRE(recv() == FrameType::kConfig);
    REQUIRE(channel->send_frame(FrameType::kReady, {}, 1s).ok());
  }
  std::optional<MigrationChannel> channel;
  std::vector<std::byte> payload;
};

// The source's end of a scripted conversation with a real MigrationReceiver.
struct ScriptedSource {
  explicit ScriptedSource(const MigrationAddress& address) {
    auto fd = connect(address, 2s);
    REQUIRE(fd.ok());
    auto ch = MigrationChannel::create(std::move(fd).value());
    REQUIRE(ch.ok());
    channel.emplace(std::move(ch).value());
  }
  void handshake() {
    REQUIRE(channel->send_frame(FrameType::kHello, encode_hello({}), 1s).ok());
    REQUIRE(channel->recv_frame(payload, 5s).ok());
    MigrationConfig config{"{}", layout_of(petrel::testing::make_migration_memory())};
    REQUIRE(channel->send_frame(FrameType::kConfig, encode_config(config), 1s).ok());
    auto ready = channel->recv_frame(payload, 5s);
    REQUIRE(ready.ok());
    REQUIRE(*ready == FrameType::kReady);
  }
  void send_raw(const std::vector<std::byte>& bytes) {
    REQUIRE(::send(channel->fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  // The receiver's last word (ERROR or CANCEL), if any.
  std::optional<FrameType> last_word() {
    auto t = channel->recv_frame(payload, 5s);
    return t.ok() ? std::optional(*t) : std::nullopt;
  }
  std::optional<MigrationChannel> channel;
  std::vector<std::byte> payload;
};

// 8 MiB of non-zero pages: round 0 takes a while under a bandwidth limit.
void fill(FakeSource& source) {
  for (uint64_t page = 0; page < 2048; ++page) {
    source.write_page(0, page, 0x11);
  }
}

std::vector<std::byte> header(uint32_t type, uint64_t length) {
  std::vector<std::byte> out;
  put_le(out, type, 4);
  put_le(out, 0, 4);
  put_le(out, length, 8);
  return out;
}

}  // namespace

TEST_CASE("migration: the destination closes mid-stream", "[migration]") {
  ScratchDir dir;
  FakeSource source;
  fill(source);
  source.start_writer(0);
  auto listener = MigrationListener::listen(*parse_migration_address("tcp:127.0.0.1:0"));
  REQUIRE(listener.ok());
  std::thread dest([&] {
    ScriptedDest d(*listener);
    d.handshake();
    REQUIRE(d.recv() == FrameType::kMemory);
    // ... and the destination dies: the socket closes.
  });
  MigrationSender sender;
  MigrationOptions options;
  options.downtime = 0ms;
  options.max_rounds = 1000;
  options.bandwidth_limit = 50 << 20;
  auto r = sender.run(source, listener->address(), options);
  dest.join();
  REQUIRE_FALSE(r.ok());
  INFO(r.error().to_string());
  CHECK(r.error().code() == ErrorCode::kIo);
  CHECK(r.error().to_string().find("during precopy") != std::string::npos);
  CHECK(sender.progress().phase == MigrationPhase::kFailed);
  CHECK(source.pauses == 0);
  check_source_intact(source);
  uint64_t before = source.writes();
  std::this_thread::sleep_for(20ms);
  CHECK(source.writes() > before);  // the guest runs on
}

TEST_CASE("migration: the source closes mid-frame", "[migration]") {
  ScratchDir dir;
  FakeSink sink;
  auto listener =
      MigrationListener::listen(*parse_migration_address("unix:" + (dir.path() / "m").string()));
  REQUIRE(listener.ok());
  MigrationReceiver receiver;
  auto received =
      std::async(std::launch::async, [&] { return receiver.run(sink, *listener, 10s); });
  {
    ScriptedSource s(listener->address());
    s.handshake();
    std::vector<std::byte> frame = header(6, 4 + 16 + 4096);
    put_le(frame, 0, 4);
    frame.resize(frame.size() + 100);  // cut off inside the run header
    s.send_raw(frame);
  }
  auto r = received.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().to_string().find("connection closed by peer") != std::string::npos);
  CHECK(sink.prepares == 1);
  check_sink_discarded(sink);
  CHECK(receiver.progress().phase == MigrationPhase::kFailed);
}

TEST_CASE("migration: garbage frames are refused and the sink discarded", "[migration]") {
  struct Case {
    const char* name;
    std::vector<std::byte> bytes;
    const char* message;
  };
  auto memory_frame = [](uint32_t round, uint32_t region, uint64_t first, uint32_t count) {
    std::vector<std::byte> payload = encode_round(round);
    auto run = encode_run_header(region, first, count);
    payload.insert(payload.end(), run.begin(), run.end());
    payload.resize(payload.size() + uint64_t{count} * 4096);
    std::vector<std::byte> frame = header(6, payload.size());
    frame.insert(frame.end(), payload.begin(), payload.end());
    return frame;
  };
  std::vector<Case> cases{
      {"oversize", header(6, uint64_t{1} << 40), "over its limit"},
      {"unknown type", header(42, 0), "unknown frame type 42"},
      {"run past the region", memory_frame(0, 1, 510, 4), "outside region 1"},
      {"no such region", memory_frame(0, 9, 0, 1), "region 9 of 2"},
      {"wrong round", memory_frame(1, 0, 0, 1), "round 1 while round 0"},
      {"DONE before STATE", header(9, 0), "unexpected DONE"},
      {"a second HELLO", header(1, 0), "unexpected HELLO"},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      ScratchDir dir;
      FakeSink sink;
      auto listener = MigrationListener::listen(
          *parse_migration_address("unix:" + (dir.path() / "m").string()));
      REQUIRE(listener.ok());
      MigrationReceiver receiver;
      auto received =
          std::async(std::launch::async, [&] { return receiver.run(sink, *listener, 10s); });
      ScriptedSource s(listener->address());
      s.handshake();
      s.send_raw(c.bytes);
      auto r = received.get();
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code() == ErrorCode::kInvalidArgument);
      CHECK(r.error().to_string().find(c.message) != std::string::npos);
      check_sink_discarded(sink);
      CHECK(sink.commits == 0);
      auto word = s.last_word();  // the receiver tells the source why
      REQUIRE(word.has_value());
      CHECK(*word == FrameType::kError);
      CHECK(text_of(s.payload).find(c.message) != std::string::npos);
      // Nothing of a refused MEMORY frame was written.
      for (const GuestRegion& region : sink.memory().regions()) {
        CHECK(std::all_of(region.host_base(), region.host_base() + region.size(),
                          [](std::byte b) { return b == std::byte{0}; }));
      }
    }
  }
}

TEST_CASE("migration: cancel on either side", "[migration]") {
  ScratchDir dir;
  FakeSource source;
  FakeSink sink;
  fill(source);
  source.start_writer(0);
  auto listener =
      MigrationListener::listen(*parse_migration_address("unix:" + (dir.path() / "m").string()));
  REQUIRE(listener.ok());
  MigrationSender sender;
  MigrationReceiver receiver;
  MigrationOptions options;
  options.downtime = 0ms;
  options.max_rounds = 1000;
  options.bandwidth_limit = 20 << 20;  // slow: it is still in pre-copy when cancelled
  bool source_side = GENERATE(true, false);
  INFO((source_side ? "source cancels" : "destination cancels"));
  auto received =
      std::async(std::launch::async, [&] { return receiver.run(sink, *listener, 20s); });
  std::thread canceller([&] {
    auto give_up = std::chrono::steady_clock::now() + 10s;
    // Round 0 (8 MiB at 20 MiB/s) is still running.
    while (sender.progress().bytes_sent < (2 << 20) && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(5ms);
    }
    source_side ? sender.cancel() : receiver.cancel();
  });
  auto start = std::chrono::steady_clock::now();
  auto sent = sender.run(source, listener->address(), options);
  auto r = received.get();
  canceller.join();
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  REQUIRE_FALSE(sent.ok());
  REQUIRE_FALSE(r.ok());
  INFO(sent.error().to_string());
  INFO(r.error().to_string());
  // The cancelling side reports kCancelled; the other side learns it from the CANCEL frame,
  // or sees the connection close when the cancel cut a frame off.
  auto cancelled_or_closed = [](const Error& e) {
    return is_migration_cancelled(e) ||
           e.to_string().find("connection closed by peer") != std::string::npos;
  };
  CHECK(is_migration_cancelled(source_side ? sent.error() : r.error()));
  CHECK(cancelled_or_closed(source_side ? r.error() : sent.error()));
  CHECK((source_side ? sender.progress().phase : receiver.progress().phase) ==
        MigrationPhase::kCancelled);
  check_source_intact(source);
  check_sink_discarded(sink);
  CHECK(sink.commits == 0);
}

TEST_CASE("migration: a silent peer times out", "[migration]") {
  ScratchDir dir;
  auto listener =
      MigrationListener::listen(*parse_migration_address("unix:" + (dir.path() / "m").string()));
  REQUIRE(listener.ok());
  SECTION("the source gives up on a destination that never answers") {
    FakeSource source;
    std::thread dest([&] {
      auto fd = listener->accept(5s);  // accepts, reads nothing, says nothing
      std::this_thread::sleep_for(700ms);
    });
    MigrationSender sender;
    MigrationOptions options;
    options.timeout = 300ms;
    auto start = std::chrono::steady_clock::now();
    auto r = sender.run(source, listener->address(), options);
    CHECK(std::chrono::steady_clock::now() - start < 600ms);
    dest.join();
    REQUIRE_FALSE(r.ok());
    CHECK(is_migration_timeout(r.error()));
    check_source_intact(source);
  }
  SECTION("the destination gives up on a source that never speaks") {
    FakeSink sink;
    MigrationReceiver receiver;
    auto received =
        std::async(std::launch::async, [&] { return receiver.run(sink, *listener, 300ms); });
    auto fd = connect(listener->address(), 1s);
    REQUIRE(fd.ok());
    auto r = received.get();
    REQUIRE_FALSE(r.ok());
    CHECK(is_migration_timeout(r.error()));
    CHECK(sink.prepares == 0);
    check_sink_discarded(sink);
  }
  SECTION("nobody connects") {
    FakeSink sink;
    MigrationReceiver receiver;
    auto r = receiver.run(sink, *listener, 100ms);
    REQUIRE_FALSE(r.ok());
    CHECK(is_migration_timeout(r.error()));
  }
}

TEST_CASE("migration: failures after the pause resume the source", "[migration]") {
  ScratchDir dir;
  FakeSource source;
  FakeSink sink;
  source.write_page(0, 1, 1);
  bool fail_at_source = GENERATE(true, false);
  INFO((fail_at_source ? "final_state fails" : "commit fails"));
  source.fail_final_state = fail_at_source;
  sink.fail_commit = !fail_at_source;
  auto listener =
      MigrationListener::listen(*parse_migration_address("unix:" + (dir.path() / "m").string()));
  REQUIRE(listener.ok());
  MigrationReceiver receiver;
  auto received =
      std::async(std::launch::async, [&] { return receiver.run(sink, *listener, 10s); });
  MigrationSender sender;
  auto sent = sender.run(source, listener->address(), {});
  auto r = received.get();
  REQUIRE_FALSE(sent.ok());
  REQUIRE_FALSE(r.ok());
  CHECK(sent.error().to_string().find("during stop-and-copy") != std::string::npos);
  CHECK(sent.error().to_string().find(fail_at_source ? "injected final_state"
                                                     : "injected commit") != std::string::npos);
  CHECK(source.pauses == 1);
  CHECK(source.resumes == 1);
  check_source_intact(source);
  check_sink_discarded(sink);
}

TEST_CASE("migration: sink.prepare refusing the config", "[migration]") {
  ScratchDir dir;
  FakeSource source;
  FakeSink sink;
  sink.fail_prepare = true;
  auto listener =
      MigrationListener::listen(*parse_migration_address("unix:" + (dir.path() / "m").string()));
  REQUIRE(listener.ok());
  MigrationReceiver receiver;
  auto received =
      std::async(std::launch::async, [&] { return receiver.run(sink, *listener, 10s); });
  MigrationSender sender;
  auto sent = sender.run(source, listener->address(), {});
  REQUIRE_FALSE(received.get().ok());
  REQUIRE_FALSE(sent.ok());
  CHECK(sent.error().to_string().find("injected prepare failure") != std::string::npos);
  CHECK(source.starts == 0);
  check_source_intact(source);
  check_sink_discarded(sink);
}

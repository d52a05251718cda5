// End-to-end migrations over real sockets between a FakeSource and a FakeSink, and the
// faults: every failure must leave the source running and intact and the sink discarded.
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

struct Outcome {
  Result<MigrationResult> sent;
  Result<MigrationReceiveResult> received;
};

MigrationListener listen_on(const std::string& text) {
  auto listener = MigrationListener::listen(*parse_migration_address(text));
  REQUIRE(listener.ok());
  return std::move(listener).value();
}

Outcome migrate(FakeSource& source, FakeSink& sink, MigrationListener& listener,
                const MigrationOptions& options) {
  MigrationReceiver receiver;
  auto received = std::async(std::launch::async, [&] { return receiver.run(sink, listener, 20s); });
  MigrationSender sender;
  auto sent = sender.run(source, listener.address(), options);
  return {std::move(sent), received.get()};
}

// Source untouched by a failed migration: running, logging off, resumed if it was paused.
void check_source_intact(const FakeSource& source) {
  CHECK_FALSE(source.paused());
  CHECK_FALSE(source.logging);
  CHECK(source.resumes == source.pauses);
}

void check_sink_discarded(const FakeSink& sink) {
  CHECK(sink.commits == 0);
  CHECK(sink.discards == (sink.prepares > 0 ? 1 : 0));
}

}  // namespace

TEST_CASE("migration copies memory while the guest writes (unix and tcp)", "[migration]") {
  ScratchDir dir;
  for (std::string where :
       {"unix:" + (dir.path() / "m.sock").string(), std::string("tcp:127.0.0.1:0")}) {
    INFO(where);
    FakeSource source;
    FakeSink sink;
    for (uint64_t page = 0; page < 1024; ++page) {  // round 0 is not trivially short
      source.write_page(0, page, 0xab);
    }
    source.write_page(1, 511, 0xcd);
    source.start_writer(0);  // writes as fast as it can while pre-copy runs
    MigrationListener listener = listen_on(where);
    MigrationOptions options;
    options.downtime = 0ms;  // never reached while the writer runs: max_rounds decides
    options.max_rounds = 4;
    options.bandwidth_limit = 100 << 20;
    Outcome out = migrate(source, sink, listener, options);
    REQUIRE(out.sent.ok());
    REQUIRE(out.received.ok());
    source.stop_writer();
    CHECK(source.paused());  // the source stays paused after the ACK
    CHECK(source.resumes == 0);
    CHECK(out.sent->rounds == 5);  // max_rounds pre-copy rounds + the final one
    CHECK(out.received->rounds == 5);
    CHECK(source.writes() > 100);
    CHECK(petrel::testing::same_memory(source.memory(), sink.memory()));
    CHECK(sink.config == source.config_json());
    CHECK(sink.state == source.state);
    CHECK(sink.commits == 1);
    CHECK(sink.discards == 0);
    CHECK(out.sent->bytes_sent == out.received->bytes_received);
    CHECK(out.sent->pages_sent == out.received->pages_received);
  }
}

TEST_CASE("migration round 0 skips zero and skipped pages", "[migration]") {
  ScratchDir dir;
  FakeSource source;
  FakeSink sink;
  for (uint64_t p = 0; p < 10; ++p) {
    source.write_page(0, 100 + p, 1);  // one run of 10 pages
  }
  source.write_page(1, 0, 2);
  source.write_page(1, 7, 3);  // skipped: not sent, reads as zero at the destination
  source.skip_.regions = {{}, {uint64_t{1} << 7}};
  MigrationListener listener = listen_on("unix:" + (dir.path() / "m.sock").string());
  Outcome out = migrate(source, sink, listener, {});
  REQUIRE(out.sent.ok());
  REQUIRE(out.received.ok());
  CHECK(out.sent->pages_sent == 11);
  CHECK(out.sent->rounds == 2);  // nothing dirty after round 0: converged at once
  std::vector<std::byte> page(4096);
  std::memcpy(page.data(), sink.memory().regions()[1].host_base() + 7 * 4096, 4096);
  CHECK(page == std::vector<std::byte>(4096));
  std::memset(source.memory().regions()[1].host_base() + 7 * 4096, 0, 4096);
  CHECK(petrel::testing::same_memory(source.memory(), sink.memory()));
  // Headers: HELLO, CONFIG, two MEMORY frames + 2 ROUND_END, STATE, DONE; 3 runs.
  CHECK(out.sent->bytes_sent < 11 * 4096 + 1024);
}

TEST_CASE("migration converges by downtime with a slow writer", "[migration]") {
  ScratchDir dir;
  FakeSource source;
  FakeSink sink;
  source.start_writer(1);  // about one page per ms: a small dirty set every round
  MigrationListener listener = listen_on("unix:" + (dir.path() / "m.sock").string());
  MigrationOptions options;
  options.downtime = 300ms;
  options.max_rounds = 30;
  MigrationSender sender;
  MigrationReceiver receiver;
  auto received = std::async(std::launch::async, [&] { return receiver.run(sink, listener, 20s); });
  auto sent = sender.run(source, listener.address(), options);
  REQUIRE(sent.ok());
  REQUIRE(received.get().ok());
  source.stop_writer();
  CHECK(sent->rounds < 30);
  CHECK(sent->downtime < 300ms);
  MigrationProgress p = sender.progress();
  CHECK(p.phase == MigrationPhase::kCompleted);
  CHECK(p.bandwidth_bytes_per_s > 0);
  CHECK(p.expected_downtime_ms <= 300);
  CHECK(petrel::testing::same_memory(source.memory(), sink.memory()));
}

TEST_CASE("migration refuses another protocol version, both ways", "[migration]") {
  ScratchDir dir;
  SECTION("the destination refuses a source of version 2") {
    FakeSink sink;
    MigrationListener listener = listen_on("unix:" + (dir.path() / "m.sock").string());
    MigrationReceiver receiver;
    auto received =
        std::async(std::launch::async, [&] { return receiver.run(sink, listener, 5s); });
    auto ch = MigrationChannel::create(connect(listener.address(), 1s).value());
    REQUIRE(ch.ok());
    REQUIRE(ch->send_frame(FrameType::kHello, encode_hello({2, 4096, "petrel 2"}), 1s).ok());
    std::vector<std::byte> payload;
    auto answer = ch->recv_frame(payload, 2s);
    REQUIRE(answer.ok());
    CHECK(*answer == FrameType::kError);
    std::string text(reinterpret_cast<const char*>(payload.data()), payload.size());
    CHECK(text.find("version 2") != std::string::npos);
    CHECK(text.find("version 1") != std::string::npos);
    auto r = received.get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kUnsupported);
    CHECK(sink.prepares == 0);
    check_sink_discarded(sink);
  }
  SECTION("the source refuses a destination that acks version 2") {
    FakeSource source;
    MigrationListener listener = listen_on("unix:" + (dir.path() / "m.sock").string());
    std::thread dest([&] {
      auto ch = MigrationChannel::create(listener.accept(2s).value());
      std::vector<std::byte> payload;
      REQUIRE(ch->recv_frame(payload, 2s).ok());
      REQUIRE(ch->send_frame(FrameType::kHelloAck, encode_hello({2, 4096, "x"}), 1s).ok());
      auto bye = ch->recv_frame(payload, 2s);  // the source says why it gives up
      CHECK((bye.ok() && *bye == FrameType::kError));
    });
    MigrationSender sender;
    auto r = sender.run(source, listener.address(), {});
    dest.join();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kUnsupported);
    CHECK(r.error().to_string().find("version 2") != std::string::npos);
    CHECK(source.starts == 0);
    check_source_intact(source);
  }
}

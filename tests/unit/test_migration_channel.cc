#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <thread>

#include "scratch_dir.h"
#include "vmm/base/state_codec.h"
#include "vmm/migration_address.h"
#include "vmm/migration_channel.h"
#include "vmm/migration_protocol.h"

using namespace petrel;
using namespace std::chrono_literals;
using petrel::testing::ScratchDir;

namespace {

std::pair<MigrationChannel, MigrationChannel> channel_pair() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  auto a = MigrationChannel::create(UniqueFd(fds[0]));
  auto b = MigrationChannel::create(UniqueFd(fds[1]));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  return {std::move(a).value(), std::move(b).value()};
}

std::vector<std::byte> raw_header(uint32_t type, uint32_t flags, uint64_t length) {
  std::vector<std::byte> out;
  put_le(out, type, 4);
  put_le(out, flags, 4);
  put_le(out, length, 8);
  return out;
}

void write_raw(int fd, const std::vector<std::byte>& bytes) {
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

}  // namespace

TEST_CASE("migration addresses parse unix and tcp forms", "[migration]") {
  auto u = parse_migration_address("unix:/run/petrel/mig.sock");
  REQUIRE(u.ok());
  CHECK(u->kind == MigrationAddress::Kind::kUnix);
  CHECK(u->path == "/run/petrel/mig.sock");
  auto t = parse_migration_address("tcp:dest.example:4444");
  REQUIRE(t.ok());
  CHECK(t->host == "dest.example");
  CHECK(t->port == 4444);
  auto v6 = parse_migration_address("tcp:[::1]:80");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->to_string() == "tcp:[::1]:80");
  CHECK(parse_migration_address("tcp:127.0.0.1:0")->port == 0);
  for (const char* bad : {"", "unix:", "tcp:host", "tcp::80", "tcp:host:", "tcp:host:65536",
                          "tcp:host:8x", "tcp:::1:80", "tcp:[::1]80", "ftp:x", "tcp:[::1"}) {
    INFO(bad);
    auto r = parse_migration_address(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("migration listener: unix socket policy and tcp ephemeral port", "[migration]") {
  ScratchDir dir;
  MigrationAddress addr{MigrationAddress::Kind::kUnix, (dir.path() / "m.sock").string(), "", 0};
  {
    auto listener = MigrationListener::listen(addr);
    REQUIRE(listener.ok());
    struct stat st {};
    REQUIRE(::stat(addr.path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto client = connect(addr, 1s);
    REQUIRE(client.ok());
    auto server = listener->accept(1s);
    REQUIRE(server.ok());
    auto none = listener->accept(100ms);
    REQUIRE_FALSE(none.ok());
    CHECK(is_migration_timeout(none.error()));
    std::atomic<bool> cancel{true};
    auto cancelled = listener->accept(10s, &cancel);
    REQUIRE_FALSE(cancelled.ok());
    CHECK(is_migration_cancelled(cancelled.error()));
    // A live listener is refused (after the accepts: the probe connects to it).
    auto second = MigrationListener::listen(addr);
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().to_string().find("already listening") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(addr.path));  // unlinked at destruction
  // A stale socket file (nobody listening) is replaced.
  UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strcpy(sun.sun_path, addr.path.c_str());
  REQUIRE(::bind(stale.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0);
  CHECK(MigrationListener::listen(addr).ok());

  auto tcp = MigrationListener::listen(*parse_migration_address("tcp:127.0.0.1:0"));
  REQUIRE(tcp.ok());
  CHECK(tcp->address().port != 0);
  auto client = connect(tcp->address(), 1s);
  REQUIRE(client.ok());
  CHECK(tcp->accept(1s).ok());
  auto v6 = MigrationListener::listen(*parse_migration_address("tcp:[::1]:0"));
  if (v6.ok()) {  // hosts without IPv6 loopback skip this part
    CHECK(connect(v6->address(), 1s).ok());
  }
  // Nobody listening: the connect error, not a hang.
  MigrationAddress gone{MigrationAddress::Kind::kUnix, (dir.path() / "none").string(), "", 0};
  CHECK_FALSE(connect(gone, 1s).ok());
}

TEST_CASE("migration channel: frames, gathered pages, byte counts", "[migration]") {
  auto [a, b] = channel_pair();
  std::vector<std::byte> page(8192, std::byte{0x5a});
  std::array<std::byte, 4> head{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  std::array<iovec, 2> parts{iovec{head.data(), head.size()}, iovec{page.data(), page.size()}};
  // Bigger than the socket buffer: the sender must wait for the reader.
  std::vector<std::byte> big(3 << 20, std::byte{7});
  std::thread writer([&] {
    REQUIRE(a.send_pages(FrameType::kMemory, parts, 5s).ok());
    REQUIRE(a.send_frame(FrameType::kState, big, 5s).ok());
    REQUIRE(a.send_frame(FrameType::kDone, {}, 5s).ok());
  });
  std::vector<std::byte> payload;
  auto t1 = b.recv_frame(payload, 5s);
  REQUIRE(t1.ok());
  CHECK(*t1 == FrameType::kMemory);
  REQUIRE(payload.size() == 4 + 8192);
  CHECK(payload[0] == std::byte{1});
  CHECK(payload[4 + 8191] == std::byte{0x5a});
  REQUIRE(b.recv_frame(payload, 5s).ok());
  CHECK(payload == big);
  auto t3 = b.recv_frame(payload, 5s);
  REQUIRE(t3.ok());
  CHECK(*t3 == FrameType::kDone);
  CHECK(payload.empty());
  writer.join();
  uint64_t total = 3 * kFrameHeaderBytes + 4 + 8192 + big.size();
  CHECK(a.bytes_sent() == total);
  CHECK(b.bytes_received() == total);
}

TEST_CASE("migration channel refuses garbage headers", "[migration]") {
  struct Case {
    std::vector<std::byte> bytes;
    const char* message;
  };
  std::vector<Case> cases{
      {raw_header(99, 0, 0), "unknown frame type 99"},
      {raw_header(0, 0, 0), "unknown frame type 0"},
      {raw_header(6, 0, (64ull << 20) + 1), "MEMORY frame of 67108865 bytes is over its limit"},
      {raw_header(8, 0, 1ull << 62), "STATE frame of"},
      {raw_header(9, 0, 1), "DONE frame of 1 bytes"},
      {raw_header(5, 1, 0), "READY frame with flags 0x1"},
  };
  for (const Case& c : cases) {
    INFO(c.message);
    auto [a, b] = channel_pair();
    write_raw(a.fd(), c.bytes);
    std::vector<std::byte> payload;
    auto r = b.recv_frame(payload, 1s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    CHECK(r.error().to_string().find(c.message) != std::string::npos);
    CHECK(payload.size() < 16);  // nothing allocated for the claimed length
  }
}

TEST_CASE("migration channel: closed peer, truncation, timeout, cancel", "[migration]") {
  std::vector<std::byte> payload;
  {
    auto [a, b] = channel_pair();
    write_raw(a.fd(), raw_header(4, 0, 100));  // CONFIG promising 100 bytes, then EOF
    ::shutdown(a.fd(), SHUT_WR);
    auto r = b.recv_frame(payload, 1s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().to_string().find("connection closed by peer") != std::string::npos);
  }
  {
    auto [a, b] = channel_pair();
    auto start = std::chrono::steady_clock::now();
    auto r = b.recv_frame(payload, 200ms);
    REQUIRE_FALSE(r.ok());
    CHECK(is_migration_timeout(r.error()));
    CHECK(std::chrono::steady_clock::now() - start >= 200ms);
  }
  {
    auto [a, b] = channel_pair();
    std::thread canceller([&] {
      std::this_thread::sleep_for(100ms);
      b.cancel();
    });
    auto start = std::chrono::steady_clock::now();
    auto r = b.recv_frame(payload, 10s);
    canceller.join();
    REQUIRE_FALSE(r.ok());
    CHECK(is_migration_cancelled(r.error()));
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    // The sender, blocked on a full socket buffer, is cancelled as promptly.
    std::vector<std::byte> big(32 << 20);
    std::thread canceller2([&] {
      std::this_thread::sleep_for(100ms);
      a.cancel();
    });
    auto s = a.send_frame(FrameType::kState, big, 10s);
    canceller2.join();
    REQUIRE_FALSE(s.ok());
    CHECK(is_migration_cancelled(s.error()));
    // Cut off mid-frame: even a farewell is not sent into the broken stream.
    CHECK_FALSE(a.send_frame(FrameType::kDone, {}, 1s).ok());
  }
}

TEST_CASE("migration protocol payloads round-trip and refuse bad input", "[migration]") {
  MigrationHello hello{1, 4096, "petrel 9.9"};
  auto h = decode_hello(encode_hello(hello));
  REQUIRE(h.ok());
  CHECK(*h == hello);
  auto other = encode_hello({7, 4096, "future"});
  CHECK(decode_hello(other)->version == 7);  // judged by the caller, by number
  auto bad_magic = encode_hello(hello);
  bad_magic[0] = std::byte{'X'};
  CHECK_FALSE(decode_hello(bad_magic).ok());
  auto trailing = encode_hello(hello);
  trailing.push_back(std::byte{0});
  CHECK_FALSE(decode_hello(trailing).ok());

  MemoryLayout layout{{{0, 8 << 20, 0}, {uint64_t{4} << 30, 2 << 20, 8 << 20}}};
  auto c = decode_config(encode_config({"{\"a\":1}", layout}));
  REQUIRE(c.ok());
  CHECK(c->vm_config_json == "{\"a\":1}");
  CHECK(c->layout == layout);
  auto cfg = encode_config({"{}", layout});
  cfg[0] = std::byte{0xff};  // JSON length past the end
  CHECK_FALSE(decode_config(cfg).ok());

  std::vector<StateSection> sections{{"cpu0", {std::byte{1}}}, {"empty", {}}};
  auto st = decode_state(*encode_state(sections));
  REQUIRE(st.ok());
  CHECK(*st == sections);
  CHECK_FALSE(encode_state({{"a", {}}, {"a", {}}}).ok());
  auto dup = *encode_state({{"a", {}}, {"b", {}}});
  dup[4 + 4 + 1 + 8 + 4] = std::byte{'a'};  // rename "b" to "a"
  CHECK_FALSE(decode_state(dup).ok());
  auto huge = *encode_state({{"a", {}}});
  huge[4 + 4 + 1 + 7] = std::byte{0x80};  // data length 2^63
  CHECK_FALSE(decode_state(huge).ok());

  // MEMORY: a run outside its region is refused before any run is applied.
  std::vector<std::byte> mem = encode_round(3);
  auto good = encode_run_header(1, 511, 1);  // the last page of region 1
  mem.insert(mem.end(), good.begin(), good.end());
  mem.resize(mem.size() + 4096, std::byte{9});
  int applied = 0;
  auto apply = [&](const PageRun&) { ++applied; };
  CHECK(*decode_memory(mem, layout, 3, apply) == 1);
  CHECK(applied == 1);
  CHECK_FALSE(decode_memory(mem, layout, 4, apply).ok());  // another round
  for (auto header : {encode_run_header(1, 511, 2), encode_run_header(2, 0, 1),
                      encode_run_header(0, 0, 0), encode_run_header(1, ~uint64_t{0}, 1)}) {
    std::vector<std::byte> bad = mem;
    bad.insert(bad.end(), header.begin(), header.end());
    bad.resize(bad.size() + 4096);
    applied = 0;
    auto r = decode_memory(bad, layout, 3, apply);
    REQUIRE_FALSE(r.ok());
    CHECK(applied == 0);
  }
  mem.pop_back();  // a run shorter than its count
  CHECK_FALSE(decode_memory(mem, layout, 3, apply).ok());
}

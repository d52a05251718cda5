#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "scratch_dir.h"
#include "vmm/snapshot_file.h"

using petrel::ErrorCode;
using petrel::read_state_file;
using petrel::StateSection;
using petrel::write_state_file;
using petrel::testing::ScratchDir;

namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span(s.data(), s.size()));
  return {b.begin(), b.end()};
}

std::string hex(std::span<const std::byte> digest) {
  std::string out;
  for (auto b : digest) {
    out += fmt::format("{:02x}", std::to_integer<unsigned>(b));
  }
  return out;
}

std::vector<std::byte> slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto b = std::as_bytes(std::span(chars));
  return {b.begin(), b.end()};
}

void spit(const std::filesystem::path& path, std::span<const std::byte> data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

// Builds a state file by hand, field by field, with a correct checksum: for the refusals
// that the checksum alone would not catch (a crafted file).
class Crafted {
 public:
  Crafted& raw(std::string_view s) {
    auto b = bytes_of(s);
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  Crafted& le(uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      bytes_.push_back(static_cast<std::byte>(v >> (8 * i)));
    }
    return *this;
  }
  Crafted& header(uint32_t version, uint32_t count) {
    return raw("PETRELSN").le(version, 4).le(count, 4);
  }
  Crafted& section(std::string_view name, std::string_view data) {
    return le(name.size(), 4).raw(name).le(data.size(), 8).raw(data);
  }
  std::vector<std::byte> finish() const {
    auto out = bytes_;
    auto digest = petrel::sha256(out);
    out.insert(out.end(), digest.begin(), digest.end());
    return out;
  }

 private:
  std::vector<std::byte> bytes_;
};

std::vector<StateSection> sample_sections() {
  std::vector<std::byte> big(100000);
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<std::byte>(i * 7 + 3);
  }
  return {{"vcpu.0.regs", bytes_of("registers")},
          {"empty", {}},
          {"device/virtio-blk@0", std::move(big)},
          {"clock", bytes_of(std::string("\0\x01\x02\xff", 4))}};
}

// Refused, with the file named in the message.
void check_refused(const std::filesystem::path& path, ErrorCode code) {
  auto r = read_state_file(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == code);
  CHECK(r.error().to_string().find(path.string()) != std::string::npos);
}

}  // namespace

TEST_CASE("sha256 matches the FIPS 180-4 examples and sha256sum", "[snapshot]") {
  CHECK(hex(petrel::sha256({})) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex(petrel::sha256(bytes_of("abc"))) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex(petrel::sha256(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(hex(petrel::sha256(bytes_of(std::string(1000000, 'a')))) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

  // The trailer of a written file is the SHA-256 of the rest, as coreutils computes it.
  ScratchDir dir;
  auto path = dir.path() / "state";
  REQUIRE(write_state_file(path, sample_sections()).ok());
  auto file = slurp(path);
  auto body_path = dir.path() / "body";
  spit(body_path, std::span(file).first(file.size() - 32));
  std::string cmd = "sha256sum " + body_path.string();
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char out[65] = {};
  REQUIRE(std::fread(out, 1, 64, pipe) == 64);
  ::pclose(pipe);
  CHECK(std::string(out) == hex(std::span(file).last(32)));
}

TEST_CASE("a state file reads back the sections written", "[snapshot]") {
  ScratchDir dir;
  auto path = dir.path() / "state";
  auto sections = sample_sections();
  REQUIRE(write_state_file(path, sections).ok());
  auto back = read_state_file(path);
  REQUIRE(back.ok());
  CHECK(*back == sections);

  // Overwriting replaces the whole file; no temporary file stays behind.
  REQUIRE(write_state_file(path, {}).ok());
  back = read_state_file(path);
  REQUIRE(back.ok());
  CHECK(back->empty());
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()),
                      std::filesystem::directory_iterator()) == 1);
}

TEST_CASE("a missing state file is kNotFound", "[snapshot]") {
  ScratchDir dir;
  check_refused(dir.path() / "nothing-here", ErrorCode::kNotFound);
}

TEST_CASE("a state file with any byte changed is refused", "[snapshot]") {
  ScratchDir dir;
  auto good = dir.path() / "good";
  REQUIRE(write_state_file(good, {{"a", bytes_of("alpha")}, {"b", bytes_of("bravo")}}).ok());
  auto file = slurp(good);
  auto bad = dir.path() / "bad";
  for (size_t off = 0; off < file.size(); ++off) {
    auto copy = file;
    copy[off] ^= std::byte{0x01};
    spit(bad, copy);
    INFO("flipped a bit at offset " << off);
    auto r = read_state_file(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().to_string().find(bad.string()) != std::string::npos);
  }
  // A byte changed inside a section's data is caught by the checksum.
  auto copy = file;
  copy[30] ^= std::byte{0x40};
  spit(bad, copy);
  auto r = read_state_file(bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("corrupt") != std::string::npos);
}

TEST_CASE("a truncated or extended state file is refused", "[snapshot]") {
  ScratchDir dir;
  auto good = dir.path() / "good";
  REQUIRE(write_state_file(good, sample_sections()).ok());
  auto file = slurp(good);
  auto bad = dir.path() / "bad";
  for (size_t len = 0; len < file.size(); len += (len < 200 ? 1 : 997)) {
    spit(bad, std::span(file).first(len));
    INFO("truncated to " << len << " of " << file.size() << " bytes");
    check_refused(bad, ErrorCode::kInvalidArgument);
  }
  spit(bad, std::span(file).first(file.size() - 1));
  check_refused(bad, ErrorCode::kInvalidArgument);
  auto longer = file;
  longer.push_back(std::byte{0});
  spit(bad, longer);
  check_refused(bad, ErrorCode::kInvalidArgument);
}

TEST_CASE("a state file of another format version is refused by name", "[snapshot]") {
  ScratchDir dir;
  auto path = dir.path() / "v7";
  spit(path, Crafted().header(7, 1).section("a", "x").finish());
  auto r = read_state_file(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == ErrorCode::kUnsupported);
  CHECK(r.error().message() ==
        fmt::format("state file {}: snapshot format version 7; this petrel reads version 1",
                    path.string()));
  spit(path, Crafted().raw("PETRELSX").le(1, 4).le(0, 4).finish());
  r = read_state_file(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("wrong magic") != std::string::npos);
}

TEST_CASE("crafted state files with a valid checksum are refused", "[snapshot]") {
  ScratchDir dir;
  auto path = dir.path() / "crafted";
  auto refused = [&](const std::vector<std::byte>& file, std::string_view why) {
    spit(path, file);
    auto r = read_state_file(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    INFO(r.error().to_string());
    CHECK(r.error().message().find(why) != std::string::npos);
  };
  // The well-formed control: the same builder gives a file that reads.
  spit(path, Crafted().header(1, 2).section("a", "x").section("b", "").finish());
  REQUIRE(read_state_file(path).ok());

  refused(Crafted().header(1, 1).le(1, 4).raw("a").le(uint64_t{1} << 63, 8).raw("x").finish(),
          "says 9223372036854775808 bytes");
  refused(Crafted().header(1, 1).le(UINT32_MAX, 4).raw("a").finish(), "name of 4294967295");
  refused(Crafted().header(1, 1).le(0, 4).le(0, 8).finish(), "name of 0 bytes");
  refused(Crafted().header(1, 5000).finish(), "5000 sections is over the limit");
  refused(Crafted().header(1, 4096).section("a", "").finish(), "truncated in section 1");
  refused(Crafted().header(1, 2).section("dup", "1").section("dup", "2").finish(),
          "\"dup\" appears twice");
  refused(Crafted().header(1, 1).section("bad name", "").finish(), "ASCII");
  refused(Crafted().header(1, 1).section("a", "x").raw("junk").finish(),
          "4 bytes follow the last section");
}

TEST_CASE("a state file over the size limit is refused before it is read", "[snapshot]") {
  ScratchDir dir;
  auto path = dir.path() / "huge";
  { std::ofstream(path) << "PETRELSN"; }
  std::filesystem::resize_file(path, petrel::kMaxStateFileBytes + 1);  // sparse
  auto r = read_state_file(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().to_string().find("over the limit") != std::string::npos);
}

TEST_CASE("the writer refuses bad sections and leaves the old file", "[snapshot]") {
  ScratchDir dir;
  auto path = dir.path() / "state";
  REQUIRE(write_state_file(path, sample_sections()).ok());
  auto before = slurp(path);
  CHECK_FALSE(write_state_file(path, {{"x", {}}, {"x", {}}}).ok());
  CHECK_FALSE(write_state_file(path, {{"", {}}}).ok());
  CHECK_FALSE(write_state_file(path, {{std::string(256, 'n'), {}}}).ok());
  CHECK_FALSE(write_state_file(path, std::vector<StateSection>(4097)).ok());
  CHECK(slurp(path) == before);
}

TEST_CASE("a write that fails half-way leaves the old state file whole", "[snapshot]") {
  ScratchDir dir;
  auto path = dir.path() / "state";
  REQUIRE(write_state_file(path, sample_sections()).ok());
  auto before = slurp(path);

  // A real I/O failure in the middle of the write: the file size limit (EFBIG, with
  // SIGXFSZ ignored) stops the temporary file at 64 KiB of a 1 MiB state file.
  struct rlimit saved {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 64 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  auto r = write_state_file(path, {{"big", std::vector<std::byte>(1 << 20, std::byte{1})}});
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);

  REQUIRE_FALSE(r.ok());
  CHECK(r.error().to_string().find(path.string()) != std::string::npos);
  CHECK(slurp(path) == before);
  auto back = read_state_file(path);
  REQUIRE(back.ok());
  CHECK(*back == sample_sections());
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()),
                      std::filesystem::directory_iterator()) == 1);
}

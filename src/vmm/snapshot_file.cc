#include "vmm/snapshot_file.h"
#include "vmm/base/state_codec.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "vmm/base/unique_fd.h"

namespace petrel {

namespace {

constexpr size_t kHeaderBytes = 8 + 4 + 4;  // magic, version, section count
constexpr size_t kTrailerBytes = 32;        // SHA-256
constexpr size_t kSectionFixedBytes = 4 + 8;

// SHA-256 round constants (FIPS 180-4 section 4.2.2).
constexpr std::array<uint32_t, 64> kK{
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

void sha256_block(std::array<uint32_t, 8>& h, const std::byte* block) {
  std::array<uint32_t, 64> w{};
  for (size_t i = 0; i < 16; ++i) {
    w[i] = (std::to_integer<uint32_t>(block[4 * i]) << 24) |
           (std::to_integer<uint32_t>(block[4 * i + 1]) << 16) |
           (std::to_integer<uint32_t>(block[4 * i + 2]) << 8) |
           std::to_integer<uint32_t>(block[4 * i + 3]);
  }
  for (size_t i = 16; i < 64; ++i) {
    uint32_t s0 = std::rotr(w[i - 15], 7) ^ std::rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = std::rotr(w[i - 2], 17) ^ std::rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  auto [a, b, c, d, e, f, g, hh] = h;
  for (size_t i = 0; i < 64; ++i) {
    uint32_t t1 = hh + (std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25)) +
                  ((e & f) ^ (~e & g)) + kK[i] + w[i];
    uint32_t t2 =
        (std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  std::array<uint32_t, 8> add{a, b, c, d, e, f, g, hh};
  for (size_t i = 0; i < 8; ++i) {
    h[i] += add[i];
  }
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxSectionNameBytes &&
         std::all_of(name.begin(), name.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

Result<void> write_all(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error::from_errno("write", errno);
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

// Reads the whole file, refusing one over kMaxStateFileBytes before allocating.
Result<std::vector<std::byte>> read_bounded(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno("open", errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) {
    return Error::from_errno("fstat", errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument, "not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxStateFileBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} bytes is over the limit of {} bytes for a state file", st.st_size,
                             kMaxStateFileBytes));
  }
  std::vector<std::byte> data(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error::from_errno("read", errno);
    }
    if (n == 0) {
      return Error(ErrorCode::kIo, "the file shrank while being read");
    }
    done += static_cast<size_t>(n);
  }
  return data;
}

// Splits the checked body (header and sections, no trailer) into sections.
Result<std::vector<StateSection>> parse_sections(std::span<const std::byte> body) {
  uint64_t count = get_le(body.data() + 12, 4);
  if (count > kMaxStateSections) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} sections is over the limit of {}", count, kMaxStateSections));
  }
  std::span<const std::byte> rest = body.subspan(kHeaderBytes);
  std::vector<StateSection> sections;
  sections.reserve(static_cast<size_t>(count));
  std::set<std::string, std::less<>> seen;
  for (uint64_t i = 0; i < count; ++i) {
    if (rest.size() < 4) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("truncated in section {}", i));
    }
    uint64_t name_len = get_le(rest.data(), 4);
    rest = rest.subspan(4);
    if (name_len == 0 || name_len > kMaxSectionNameBytes || name_len > rest.size()) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("section {} has a name of {} bytes ({} bytes remain)", i, name_len,
                               rest.size()));
    }
    std::string name(reinterpret_cast<const char*>(rest.data()), static_cast<size_t>(name_len));
    rest = rest.subspan(static_cast<size_t>(name_len));
    if (!valid_name(name)) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("section {} has a name with bytes outside ASCII 0x21-0x7e", i));
    }
    if (!seen.insert(name).second) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("section \"{}\" appears twice", name));
    }
    if (rest.size() < 8) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("truncated in section \"{}\"", name));
    }
    uint64_t data_len = get_le(rest.data(), 8);
    rest = rest.subspan(8);
    if (data_len > rest.size()) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("section \"{}\" says {} bytes but only {} remain", name, data_len,
                               rest.size()));
    }
    auto data = rest.first(static_cast<size_t>(data_len));
    rest = rest.subspan(static_cast<size_t>(data_len));
    sections.push_back(StateSection{std::move(name), {data.begin(), data.end()}});
  }
  if (!rest.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} bytes follow the last section", rest.size()));
  }
  return sections;
}

}  // namespace

Sha256Digest sha256(std::span<const std::byte> data) {
  std::array<uint32_t, 8> h{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                            0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  size_t full = data.size() / 64 * 64;
  for (size_t off = 0; off < full; off += 64) {
    sha256_block(h, data.data() + off);
  }
  // Padding: 0x80, zeros, then the length in bits as a big-endian u64 (one or two blocks).
  std::array<std::byte, 128> tail{};
  size_t rem = data.size() - full;
  if (rem > 0) {
    std::memcpy(tail.data(), data.data() + full, rem);
  }
  tail[rem] = std::byte{0x80};
  size_t tail_len = rem < 56 ? 64 : 128;
  uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  for (size_t i = 0; i < 8; ++i) {
    tail[tail_len - 1 - i] = static_cast<std::byte>(bits >> (8 * i));
  }
  for (size_t off = 0; off < tail_len; off += 64) {
    sha256_block(h, tail.data() + off);
  }
  Sha256Digest digest{};
  for (size_t i = 0; i < 32; ++i) {
    digest[i] = static_cast<std::byte>(h[i / 4] >> (24 - 8 * (i % 4)));
  }
  return digest;
}

Result<void> replace_file_atomically(const std::filesystem::path& path,
                                     const std::function<Result<void>(int fd)>& fill) {
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  std::string templ = (dir / (path.filename().string() + ".tmp-XXXXXX")).string();
  UniqueFd fd(::mkostemp(templ.data(), O_CLOEXEC));
  if (!fd.valid()) {
    return Error::from_errno(fmt::format("create a temporary file for {}", path.string()), errno);
  }
  auto written = [&]() -> Result<void> {
    PETREL_TRY(fill(fd.get()));
    if (::fsync(fd.get()) < 0) {
      return Error::from_errno("fsync", errno);
    }
    if (::rename(templ.c_str(), path.c_str()) < 0) {
      return Error::from_errno("rename", errno);
    }
    return {};
  }();
  if (!written.ok()) {
    ::unlink(templ.c_str());
    return std::move(written).error().context(fmt::format("writing {}", path.string()));
  }
  // The rename is durable only once the directory is: a failure here is reported, though
  // the new file is in place.
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid() || ::fsync(dir_fd.get()) < 0) {
    return Error::from_errno(fmt::format("fsync the directory of {}", path.string()), errno);
  }
  return {};
}

Result<void> write_state_file(const std::filesystem::path& path,
                              const std::vector<StateSection>& sections) {
  auto refuse = [&](std::string why) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("state file {}: {}", path.string(), std::move(why)));
  };
  if (sections.size() > kMaxStateSections) {
    return refuse(
        fmt::format("{} sections is over the limit of {}", sections.size(), kMaxStateSections));
  }
  uint64_t total = kHeaderBytes + kTrailerBytes;
  std::set<std::string_view> seen;
  for (const auto& s : sections) {
    if (!valid_name(s.name)) {
      return refuse(fmt::format("section name \"{}\" is not 1-{} bytes of ASCII 0x21-0x7e", s.name,
                                kMaxSectionNameBytes));
    }
    if (!seen.insert(s.name).second) {
      return refuse(fmt::format("section \"{}\" appears twice", s.name));
    }
    total += kSectionFixedBytes + s.name.size();
    if (s.data.size() > kMaxStateFileBytes || total + s.data.size() > kMaxStateFileBytes) {
      return refuse(fmt::format("the sections exceed the limit of {} bytes", kMaxStateFileBytes));
    }
    total += s.data.size();
  }
  std::vector<std::byte> out;
  out.reserve(static_cast<size_t>(total));
  for (char c : kStateFileMagic) {
    out.push_back(static_cast<std::byte>(c));
  }
  put_le(out, kStateFileVersion, 4);
  put_le(out, sections.size(), 4);
  for (const auto& s : sections) {
    put_le(out, s.name.size(), 4);
    for (char c : s.name) {
      out.push_back(static_cast<std::byte>(c));
    }
    put_le(out, s.data.size(), 8);
    out.insert(out.end(), s.data.begin(), s.data.end());
  }
  Sha256Digest digest = sha256(out);
  out.insert(out.end(), digest.begin(), digest.end());
  return replace_file_atomically(path, [&](int fd) { return write_all(fd, out); });
}

Result<std::vector<StateSection>> read_state_file(const std::filesystem::path& path) {
  auto refuse = [&](ErrorCode code, std::string why) {
    return Error(code, fmt::format("state file {}: {}", path.string(), std::move(why)));
  };
  auto bytes = read_bounded(path);
  if (!bytes.ok()) {
    return std::move(bytes).error().context(fmt::format("state file {}", path.string()));
  }
  std::span<const std::byte> file(*bytes);
  if (file.size() < kStateFileMagic.size() ||
      std::memcmp(file.data(), kStateFileMagic.data(), kStateFileMagic.size()) != 0) {
    return refuse(ErrorCode::kInvalidArgument, "not a petrel state file (wrong magic)");
  }
  if (file.size() < kHeaderBytes + kTrailerBytes) {
    return refuse(
        ErrorCode::kInvalidArgument,
        fmt::format("truncated: {} bytes is shorter than a header and a checksum", file.size()));
  }
  uint64_t version = get_le(file.data() + 8, 4);
  if (version != kStateFileVersion) {
    return refuse(ErrorCode::kUnsupported,
                  fmt::format("snapshot format version {}; this petrel reads version {}", version,
                              kStateFileVersion));
  }
  auto body = file.first(file.size() - kTrailerBytes);
  Sha256Digest digest = sha256(body);
  if (std::memcmp(digest.data(), file.data() + body.size(), kTrailerBytes) != 0) {
    return refuse(ErrorCode::kInvalidArgument,
                  "corrupt: the SHA-256 checksum does not match (damaged or truncated)");
  }
  auto sections = parse_sections(body);
  if (!sections.ok()) {
    return refuse(ErrorCode::kInvalidArgument, sections.error().message());
  }
  return std::move(sections).value();
}

}  // namespace petrel

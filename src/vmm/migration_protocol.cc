#include "vmm/migration_protocol.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "vmm/base/state_codec.h"

namespace petrel {

namespace {

// Reads little-endian fields from an untrusted payload; every read checks what is left.
class Cursor {
 public:
  Cursor(std::span<const std::byte> in, std::string_view what) : in_(in), what_(what) {}

  Result<std::span<const std::byte>> take(uint64_t n, std::string_view field) {
    if (n > in_.size() - pos_) {
      return fail(fmt::format("{} needs {} bytes, {} left", field, n, in_.size() - pos_));
    }
    auto out = in_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  Result<uint64_t> le(size_t bytes, std::string_view field) {
    PETREL_TRY_ASSIGN(auto raw, take(bytes, field));
    return get_le(raw.data(), bytes);
  }
  Result<uint32_t> u32(std::string_view field) {
    PETREL_TRY_ASSIGN(uint64_t v, le(4, field));
    return static_cast<uint32_t>(v);
  }
  Result<uint64_t> u64(std::string_view field) { return le(8, field); }
  Result<void> end() const {
    if (pos_ != in_.size()) {
      return fail(fmt::format("{} unexpected bytes at the end", in_.size() - pos_));
    }
    return ok();
  }
  bool done() const { return pos_ == in_.size(); }
  Error fail(std::string_view message) const {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("migration {} frame at offset {}: {}", what_, pos_, message));
  }

 private:
  std::span<const std::byte> in_;
  std::string_view what_;
  size_t pos_ = 0;
};

std::string to_string(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void put_bytes(std::vector<std::byte>& out, std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  out.insert(out.end(), p, p + text.size());
}

bool valid_section_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxSectionNameBytes &&
         std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

}  // namespace

std::vector<std::byte> encode_hello(const MigrationHello& hello) {
  std::vector<std::byte> out;
  put_bytes(out, std::string_view(kMigrationMagic.data(), kMigrationMagic.size()));
  put_le(out, hello.version, 4);
  put_le(out, hello.page_size, 4);
  std::string_view software(hello.software);
  software = software.substr(0, kMaxSoftwareBytes);
  put_le(out, software.size(), 4);
  put_bytes(out, software);
  return out;
}

Result<MigrationHello> decode_hello(std::span<const std::byte> payload) {
  Cursor in(payload, "HELLO");
  PETREL_TRY_ASSIGN(auto magic, in.take(kMigrationMagic.size(), "magic"));
  if (std::memcmp(magic.data(), kMigrationMagic.data(), magic.size()) != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "migration HELLO frame: not a petrel migration "
                 "stream (bad magic)");
  }
  MigrationHello hello;
  PETREL_TRY_ASSIGN(hello.version, in.u32("version"));
  if (hello.version != kMigrationVersion) {
    return hello;  // the rest is that version's business; the caller refuses it by number
  }
  PETREL_TRY_ASSIGN(hello.page_size, in.u32("page size"));
  PETREL_TRY_ASSIGN(uint32_t len, in.u32("software length"));
  if (len > kMaxSoftwareBytes) {
    return in.fail(fmt::format("software name of {} bytes (at most {})", len, kMaxSoftwareBytes));
  }
  PETREL_TRY_ASSIGN(auto software, in.take(len, "software name"));
  hello.software = to_string(software);
  PETREL_TRY(in.end());
  return hello;
}

std::vector<std::byte> encode_config(const MigrationConfig& config) {
  std::vector<std::byte> out;
  put_le(out, config.vm_config_json.size(), 4);
  put_bytes(out, config.vm_config_json);
  std::vector<std::byte> layout = config.layout.encode();
  put_le(out, layout.size(), 4);
  out.insert(out.end(), layout.begin(), layout.end());
  return out;
}

Result<MigrationConfig> decode_config(std::span<const std::byte> payload) {
  Cursor in(payload, "CONFIG");
  MigrationConfig config;
  PETREL_TRY_ASSIGN(uint32_t json_len, in.u32("config length"));
  PETREL_TRY_ASSIGN(auto json, in.take(json_len, "VM config"));
  config.vm_config_json = to_string(json);
  PETREL_TRY_ASSIGN(uint32_t layout_len, in.u32("layout length"));
  PETREL_TRY_ASSIGN(auto layout, in.take(layout_len, "memory layout"));
  PETREL_TRY(in.end());
  PETREL_TRY_ASSIGN(config.layout,
                    std::move(MemoryLayout::decode(layout)).context("migration CONFIG frame"));
  return config;
}

MemoryLayout layout_of(const GuestMemory& memory) {
  MemoryLayout layout;
  uint64_t offset = 0;
  for (const GuestRegion& region : memory.regions()) {
    layout.regions.push_back({region.start().value(), region.size(), offset});
    offset += region.size();
  }
  return layout;
}

bool memory_matches(const GuestMemory& memory, const MemoryLayout& layout) {
  if (memory.regions().size() != layout.regions.size()) {
    return false;
  }
  for (size_t i = 0; i < layout.regions.size(); ++i) {
    const GuestRegion& region = memory.regions()[i];
    if (region.start().value() != layout.regions[i].guest_start ||
        region.size() != layout.regions[i].size) {
      return false;
    }
  }
  return true;
}

std::vector<std::byte> encode_round(uint32_t round) {
  std::vector<std::byte> out;
  put_le(out, round, 4);
  return out;
}

Result<uint32_t> decode_round(std::span<const std::byte> payload) {
  Cursor in(payload, "ROUND_END");
  PETREL_TRY_ASSIGN(uint32_t round, in.u32("round"));
  PETREL_TRY(in.end());
  return round;
}

std::array<std::byte, kRunHeaderBytes> encode_run_header(uint32_t region, uint64_t first_page,
                                                         uint32_t count) {
  std::vector<std::byte> out;
  put_le(out, region, 4);
  put_le(out, first_page, 8);
  put_le(out, count, 4);
  std::array<std::byte, kRunHeaderBytes> header{};
  std::copy(out.begin(), out.end(), header.begin());
  return header;
}

Result<uint64_t> decode_memory(std::span<const std::byte> payload, const MemoryLayout& layout,
                               uint32_t expected_round,
                               const std::function<void(const PageRun&)>& apply) {
  Cursor in(payload, "MEMORY");
  PETREL_TRY_ASSIGN(uint32_t round, in.u32("round"));
  if (round != expected_round) {
    return in.fail(fmt::format("round {} while round {} is open", round, expected_round));
  }
  std::vector<PageRun> runs;
  uint64_t pages = 0;
  while (!in.done()) {
    PageRun run{};
    PETREL_TRY_ASSIGN(run.region, in.u32("run region"));
    PETREL_TRY_ASSIGN(run.first_page, in.u64("run first page"));
    PETREL_TRY_ASSIGN(run.count, in.u32("run page count"));
    if (run.region >= layout.regions.size()) {
      return in.fail(fmt::format("region {} of {}", run.region, layout.regions.size()));
    }
    uint64_t region_pages = layout.regions[run.region].size / kMigrationPageSize;
    if (run.count == 0 || run.first_page >= region_pages ||
        run.count > region_pages - run.first_page) {
      return in.fail(fmt::format("pages [{}, +{}) outside region {} of {} pages", run.first_page,
                                 run.count, run.region, region_pages));
    }
    PETREL_TRY_ASSIGN(run.data, in.take(uint64_t{run.count} * kMigrationPageSize, "page data"));
    pages += run.count;
    runs.push_back(run);
  }
  for (const PageRun& run : runs) {
    apply(run);
  }
  return pages;
}

Result<std::vector<std::byte>> encode_state(const std::vector<StateSection>& sections) {
  if (sections.size() > kMaxStateSections) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("{} state sections (at most {})", sections.size(), kMaxStateSections));
  }
  std::set<std::string_view> names;
  std::vector<std::byte> out;
  put_le(out, sections.size(), 4);
  for (const StateSection& section : sections) {
    if (!valid_section_name(section.name) || !names.insert(section.name).second) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("state section name '{}' is invalid or repeated", section.name));
    }
    put_le(out, section.name.size(), 4);
    put_bytes(out, section.name);
    put_le(out, section.data.size(), 8);
    out.insert(out.end(), section.data.begin(), section.data.end());
  }
  return out;
}

Result<std::vector<StateSection>> decode_state(std::span<const std::byte> payload) {
  Cursor in(payload, "STATE");
  PETREL_TRY_ASSIGN(uint32_t count, in.u32("section count"));
  if (count > kMaxStateSections) {
    return in.fail(fmt::format("{} sections (at most {})", count, kMaxStateSections));
  }
  std::vector<StateSection> sections;
  std::set<std::string> names;
  for (uint32_t i = 0; i < count; ++i) {
    PETREL_TRY_ASSIGN(uint32_t name_len, in.u32("section name length"));
    if (name_len == 0 || name_len > kMaxSectionNameBytes) {
      return in.fail(fmt::format("section name of {} bytes", name_len));
    }
    PETREL_TRY_ASSIGN(auto name, in.take(name_len, "section name"));
    StateSection section{to_string(name), {}};
    if (!valid_section_name(section.name) || !names.insert(section.name).second) {
      return in.fail(fmt::format("section name '{}' is invalid or repeated", section.name));
    }
    PETREL_TRY_ASSIGN(uint64_t data_len, in.u64("section length"));
    PETREL_TRY_ASSIGN(auto data, in.take(data_len, "section data"));
    section.data.assign(data.begin(), data.end());
    sections.push_back(std::move(section));
  }
  PETREL_TRY(in.end());
  return sections;
}

}  // namespace petrel

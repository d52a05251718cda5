#include "vmm/snapshot.h"

#include <sys/stat.h>

#include <algorithm>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace petrel {

namespace {

namespace fs = std::filesystem;

Result<void> prepare_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    if (!fs::create_directory(dir, ec)) {
      return Error(ErrorCode::kIo, fmt::format("snapshot directory {}: cannot create it: {}",
                                               dir.string(), ec.message()));
    }
    return {};
  }
  if (!fs::is_directory(dir, ec)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("snapshot directory {}: not a directory", dir.string()));
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    // Also the temporary files an interrupted write may have left (".<name>.tmp...").
    const bool ours = name == kSnapshotStateFile || name == kSnapshotMemoryFile ||
                      name.starts_with(std::string(".") + kSnapshotStateFile) ||
                      name.starts_with(std::string(".") + kSnapshotMemoryFile);
    if (!ours) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("snapshot directory {} holds {}, which is not part of a petrel "
                               "snapshot: refusing to write there",
                               dir.string(), name));
    }
  }
  if (ec) {
    return Error(ErrorCode::kIo,
                 fmt::format("snapshot directory {}: {}", dir.string(), ec.message()));
  }
  // The state file is the commit point: without it the directory is no snapshot.
  fs::remove(dir / kSnapshotStateFile, ec);
  if (ec) {
    return Error(ErrorCode::kIo,
                 fmt::format("removing the old state file in {}: {}", dir.string(), ec.message()));
  }
  return {};
}

uint64_t allocated_bytes(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return 0;
  }
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace

Result<SnapshotStats> write_snapshot(const fs::path& dir, const VmConfig& config, Vm& vm,
                                     const PageSkip* skip) {
  const auto begin = std::chrono::steady_clock::now();
  PETREL_TRY_ASSIGN(auto sections, vm.save_state());
  PETREL_TRY(prepare_dir(dir));
  const fs::path memory_path = dir / kSnapshotMemoryFile;
  PETREL_TRY_ASSIGN(MemoryLayout layout, save_memory(vm.memory(), memory_path, skip));

  const std::string config_text = config_to_json(config).dump();
  std::vector<StateSection> all;
  all.push_back(
      {kSnapshotConfigSection, {as_bytes(config_text).begin(), as_bytes(config_text).end()}});
  all.push_back({kSnapshotLayoutSection, layout.encode()});
  std::move(sections.begin(), sections.end(), std::back_inserter(all));
  const fs::path state_path = dir / kSnapshotStateFile;
  PETREL_TRY(write_state_file(state_path, all));

  SnapshotStats stats;
  stats.memory_bytes_written = allocated_bytes(memory_path);
  std::error_code ec;
  stats.state_bytes = fs::file_size(state_path, ec);
  stats.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - begin);
  spdlog::info("snapshot written to {}: {} bytes of memory data, {} bytes of state, {} ms",
               dir.string(), stats.memory_bytes_written, stats.state_bytes, stats.duration.count());
  return stats;
}

Result<LoadedSnapshot> read_snapshot(const fs::path& dir) {
  auto fail = [&dir](Error e) {
    return std::move(e).context(fmt::format("snapshot {}", dir.string()));
  };
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Error(ErrorCode::kNotFound, fmt::format("snapshot {}: no such directory", dir.string()));
  }
  auto read = read_state_file(dir / kSnapshotStateFile);
  if (!read) {
    return fail(std::move(read).error());
  }
  std::vector<StateSection> sections = std::move(read).value();
  auto take = [&](std::string_view name) -> Result<std::vector<std::byte>> {
    auto it = std::find_if(sections.begin(), sections.end(),
                           [&](const StateSection& s) { return s.name == name; });
    if (it == sections.end()) {
      return Error(
          ErrorCode::kInvalidArgument,
          fmt::format("snapshot {}: the state file has no \"{}\" section", dir.string(), name));
    }
    auto data = std::move(it->data);
    sections.erase(it);
    return data;
  };
  PETREL_TRY_ASSIGN(auto config_bytes, take(kSnapshotConfigSection));
  PETREL_TRY_ASSIGN(auto layout_bytes, take(kSnapshotLayoutSection));
  auto config = parse_config_json(
      std::string_view(reinterpret_cast<const char*>(config_bytes.data()), config_bytes.size()));
  if (!config) {
    return fail(std::move(config).error());
  }
  auto layout = MemoryLayout::decode(layout_bytes);
  if (!layout) {
    return fail(std::move(layout).error());
  }
  auto memory = map_guest_memory_private(dir / kSnapshotMemoryFile, *layout);
  if (!memory) {
    return fail(std::move(memory).error());
  }
  return LoadedSnapshot{std::move(config).value(), std::move(memory).value(), std::move(sections)};
}

}  // namespace petrel

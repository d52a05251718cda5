// BlockHarness: a virtio-blk device on a real temp image file, driven through a fake ring
// (VirtqBuilder) and a real io_context event loop, with a recording interrupt. Test code.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "scratch_dir.h"
#include "virtio/block_device.h"
#include "virtio/block_request.h"
#include "virtio/virtio_spec.h"
#include "virtq_builder.h"

namespace petrel::testing {

class RecordingInterrupt : public virtio::VirtioInterrupt {
 public:
  void notify_queue(uint16_t /*index*/) override { ++queue_notifications; }
  void notify_config() override { ++config_notifications; }
  void set_needs_reset() override { needs_reset = true; }

  int queue_notifications = 0;
  int config_notifications = 0;
  bool needs_reset = false;
};

// Creates a sparse file of `size` bytes.
inline std::filesystem::path make_image(const ScratchDir& dir, const std::string& name,
                                        uint64_t size) {
  auto path = dir.path() / name;
  int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  ::close(fd);
  return path;
}

inline uint64_t allocated_bytes(const std::filesystem::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

inline std::vector<std::byte> read_file_range(const std::filesystem::path& path, uint64_t offset,
                                              uint64_t len) {
  std::vector<std::byte> out(len);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, out.data(), len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len));
  ::close(fd);
  return out;
}

inline void write_file_range(const std::filesystem::path& path, uint64_t offset,
                             std::span<const std::byte> data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)) ==
          static_cast<ssize_t>(data.size()));
  REQUIRE(::fsync(fd) == 0);
  ::close(fd);
}

inline std::vector<std::byte> pattern(uint64_t len, uint8_t seed) {
  std::vector<std::byte> out(len);
  for (uint64_t i = 0; i < len; ++i) {
    out[i] = static_cast<std::byte>(static_cast<uint8_t>(seed + i * 7 + (i >> 9)));
  }
  return out;
}

inline bool all_zero(std::span<const std::byte> data) {
  for (auto b : data) {
    if (b != std::byte{0}) {
      return false;
    }
  }
  return true;
}

class BlockHarness {
 public:
  static constexpr uint64_t kAllBlkFeatures =
      virtio::feature_bit(virtio::blk::kFFlush) | virtio::feature_bit(virtio::blk::kFDiscard) |
      virtio::feature_bit(virtio::blk::kFWriteZeroes) | virtio::feature_bit(virtio::blk::kFSegMax);

  struct Sent {
    uint16_t head = 0;
    GuestAddress status;
    std::vector<VirtqBuilder::Buffer> data;  // where the data buffers are (addr filled)
  };

  BlockHarness(virtio::DiskEngine engine, uint64_t image_size, bool read_only = false,
               uint16_t queue_size = 64, uint64_t mem_size = 8 << 20)
      : q_(queue_size, mem_size) {
    path_ = make_image(dir_, "disk.img", image_size);
    config_.path = path_;
    config_.read_only = read_only;
    config_.engine = engine;
    config_.serial = "petrel-test-serial";
    auto dev = virtio::BlockDevice::open(config_);
    INFO((dev.ok() ? std::string() : dev.error().to_string()));
    REQUIRE(dev.ok());
    dev_ = std::move(dev).value();
  }
  ~BlockHarness() { dev_.reset(); }

  void activate(uint64_t features = kAllBlkFeatures, bool event_idx = false) {
    virtio::ActivateContext ctx;
    ctx.memory = &q_.memory();
    ctx.features = features;
    ctx.queues.emplace_back(q_.make_queue(event_idx));
    ctx.interrupt = &irq_;
    ctx.io = &io_;
    auto r = dev_->activate(std::move(ctx));
    INFO((r.ok() ? std::string() : r.error().to_string()));
    REQUIRE(r.ok());
  }

  // Adds and publishes header + buffers + a status byte; does not kick.
  Sent add(uint32_t type, uint64_t sector, std::initializer_list<VirtqBuilder::Buffer> data,
           bool with_status = true, uint32_t header_len = 16) {
    GuestAddress header = q_.alloc(16);
    virtio::blk::RequestHeader h{type, 0, sector};
    q_.put(header, h);
    std::vector<VirtqBuilder::Buffer> bufs;
    bufs.push_back(VirtqBuilder::at(header, header_len, false));
    for (const auto& b : data) {
      bufs.push_back(b.addr ? b : VirtqBuilder::at(q_.alloc(b.len, 512), b.len, b.writable));
    }
    Sent sent;
    if (with_status) {
      sent.status = q_.alloc(1);
      q_.put<uint8_t>(sent.status, 0xff);
      bufs.push_back(VirtqBuilder::at(sent.status, 1, true));
    }
    sent.data.assign(bufs.begin() + 1, bufs.end() - (with_status ? 1 : 0));
    auto chain = q_.add_chain(std::span<const VirtqBuilder::Buffer>(bufs));
    q_.publish(chain.head);
    sent.head = chain.head;
    return sent;
  }

  // Kicks the queue and runs the loop until `used` used entries exist (or 5 s pass).
  void kick_and_wait(uint16_t used) {
    dev_->process_queue(0);
    run_until([&] { return q_.used_idx() >= used; });
  }

  template <typename Pred>
  bool run_until(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
      if (io_.stopped()) {
        io_.restart();
      }
      io_.run_one_for(std::chrono::milliseconds(10));
    }
    return pred();
  }

  // One request, kicked and completed; returns its status byte.
  uint8_t roundtrip(uint32_t type, uint64_t sector,
                    std::initializer_list<VirtqBuilder::Buffer> data, Sent* out = nullptr) {
    uint16_t before = q_.used_idx();
    Sent s = add(type, sector, data);
    kick_and_wait(static_cast<uint16_t>(before + 1));
    REQUIRE(q_.used_idx() == static_cast<uint16_t>(before + 1));
    if (out != nullptr) {
      *out = s;
    }
    return status(s);
  }

  uint8_t status(const Sent& s) const { return q_.get<uint8_t>(s.status); }

  GuestAddress put_data(std::span<const std::byte> bytes) {
    GuestAddress addr = q_.alloc(bytes.size(), 512);
    q_.write_bytes(addr, bytes);
    return addr;
  }
  GuestAddress put_discard(uint64_t sector, uint32_t num, uint32_t flags) {
    GuestAddress addr = q_.alloc(16);
    q_.put(addr, virtio::blk::DiscardSegment{sector, num, flags});
    return addr;
  }

  VirtqBuilder& q() { return q_; }
  virtio::BlockDevice& dev() { return *dev_; }
  std::shared_ptr<virtio::BlockDevice>& dev_ptr() { return dev_; }
  RecordingInterrupt& irq() { return irq_; }
  boost::asio::io_context& io() { return io_; }
  const std::filesystem::path& path() const { return path_; }
  const virtio::BlockConfig& config() const { return config_; }
  const ScratchDir& dir() const { return dir_; }

 private:
  ScratchDir dir_;
  boost::asio::io_context io_;  // before the device: outlives its eventfd watch
  VirtqBuilder q_;
  RecordingInterrupt irq_;
  std::filesystem::path path_;
  virtio::BlockConfig config_;
  std::shared_ptr<virtio::BlockDevice> dev_;
};

}  // namespace petrel::testing

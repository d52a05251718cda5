// Disk backends: opening, locking, engine selection, and the engines' ops directly.
#include <catch2/catch.hpp>
#include <cstring>

#include "test_block_harness.h"
#include "virtio/disk_file.h"
#include "virtio/disk_file_sync.h"
#include "virtio/disk_file_uring.h"
#include "virtio/disk_open.h"

using petrel::ErrorCode;
using petrel::testing::all_zero;
using petrel::testing::allocated_bytes;
using petrel::testing::make_image;
using petrel::testing::pattern;
using petrel::testing::read_file_range;
using petrel::testing::ScratchDir;
using petrel::virtio::BlockConfig;
using petrel::virtio::BlockDevice;
using petrel::virtio::DiskBackend;
using petrel::virtio::DiskCompletion;
using petrel::virtio::DiskEngine;
using petrel::virtio::DiskOp;
using petrel::virtio::DiskOpKind;
using petrel::virtio::open_disk;

TEST_CASE("disk engine names parse", "[block]") {
  using petrel::virtio::parse_disk_engine;
  CHECK(parse_disk_engine("auto") == DiskEngine::kAuto);
  CHECK(parse_disk_engine("uring") == DiskEngine::kUring);
  CHECK(parse_disk_engine("io_uring") == DiskEngine::kUring);
  CHECK(parse_disk_engine("sync") == DiskEngine::kSync);
  CHECK_FALSE(parse_disk_engine("aio").has_value());
}

TEST_CASE("open_disk picks the engine and locks the image", "[block]") {
  ScratchDir dir;
  auto path = make_image(dir, "a.img", 1 << 20);
  BlockConfig cfg{path, false, "", DiskEngine::kAuto, false};

  SECTION("auto uses io_uring where it works, sync when asked") {
    auto disk = open_disk(cfg, 256);
    REQUIRE(disk.ok());
    CHECK((*disk)->engine_name() == "io_uring");  // this host allows io_uring
    CHECK((*disk)->size() == (1 << 20));
    CHECK_FALSE((*disk)->read_only());
    disk->reset();
    cfg.engine = DiskEngine::kSync;
    auto sync = open_disk(cfg, 256);
    REQUIRE(sync.ok());
    CHECK((*sync)->engine_name() == "sync");
  }
  SECTION("a second writer is refused with a clear error") {
    auto first = BlockDevice::open(cfg);
    REQUIRE(first.ok());
    auto second = BlockDevice::open(cfg);
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().code() == ErrorCode::kState);
    CHECK_THAT(second.error().to_string(), Catch::Contains("in use by another process"));
    cfg.read_only = true;
    CHECK_FALSE(BlockDevice::open(cfg).ok());  // a reader while a writer holds it
    first->reset();
    auto ro1 = BlockDevice::open(cfg);
    auto ro2 = BlockDevice::open(cfg);
    CHECK(ro1.ok());
    CHECK(ro2.ok());  // readers share
    cfg.read_only = false;
    CHECK_FALSE(BlockDevice::open(cfg).ok());
  }
  SECTION("missing image, directory") {
    cfg.path = dir.path() / "missing.img";
    auto r = BlockDevice::open(cfg);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kNotFound);
    cfg.path = dir.path();
    CHECK_FALSE(BlockDevice::open(cfg).ok());
  }
  SECTION("default serial") {
    auto dev = BlockDevice::open(cfg);
    REQUIRE(dev.ok());
    CHECK((*dev)->serial() == BlockDevice::default_serial(path));
  }
}

TEST_CASE("disk engines perform ops and report errors", "[block]") {
  DiskEngine engine = GENERATE(DiskEngine::kSync, DiskEngine::kUring);
  INFO("engine " << petrel::virtio::to_string(engine));
  ScratchDir dir;
  auto path = make_image(dir, "b.img", 4 << 20);
  boost::asio::io_context io;  // outlives the backend (DiskBackend::attach contract)
  auto opened = open_disk(BlockConfig{path, false, "", engine, false}, 64);
  REQUIRE(opened.ok());
  DiskBackend& disk = **opened;
  std::vector<DiskCompletion> done;
  REQUIRE(disk.attach(io,
                      [&](std::span<const DiskCompletion> c) {
                        done.insert(done.end(), c.begin(), c.end());
                      })
              .ok());
  auto wait = [&](size_t n) {
    disk.commit();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (done.size() < n && std::chrono::steady_clock::now() < deadline) {
      if (io.stopped()) {
        io.restart();
      }
      io.run_one_for(std::chrono::milliseconds(10));
    }
    REQUIRE(done.size() == n);
  };

  auto data = pattern(64 * 1024, 4);
  std::vector<std::byte> back(64 * 1024);
  REQUIRE(
      disk.submit(DiskOp{DiskOpKind::kWrite,
                         4096,
                         data.size(),
                         {iovec{data.data(), 1000}, iovec{data.data() + 1000, 64 * 1024 - 1000}},
                         false,
                         false},
                  7)
          .ok());
  wait(1);
  CHECK(done[0].tag == 7);
  CHECK(done[0].error == 0);
  REQUIRE(disk.submit(DiskOp{DiskOpKind::kFlush, 0, 0, {}, false, false}, 8).ok());
  REQUIRE(disk.submit(DiskOp{DiskOpKind::kRead,
                             4096,
                             back.size(),
                             {iovec{back.data(), back.size()}},
                             false,
                             false},
                      9)
              .ok());
  wait(3);
  CHECK(done[1].error == 0);
  CHECK(done[2].error == 0);
  CHECK(back == data);
  // Reading past the end of the file is an error, not a hang or zeros.
  REQUIRE(disk.submit(DiskOp{DiskOpKind::kRead,
                             (4 << 20) - 512,
                             1024,
                             {iovec{back.data(), 1024}},
                             false,
                             false},
                      10)
              .ok());
  wait(4);
  CHECK(done[3].error != 0);
  // Write-zeroes and discard.
  REQUIRE(disk.submit(DiskOp{DiskOpKind::kWriteZeroes, 4096, 8192, {}, false, false}, 11).ok());
  REQUIRE(disk.submit(DiskOp{DiskOpKind::kDiscard, 4096 + 8192, 16384, {}, false, false}, 12).ok());
  wait(6);
  CHECK(done[4].error == 0);
  CHECK(done[5].error == 0);
  auto file = read_file_range(path, 4096, 64 * 1024);
  CHECK(all_zero(std::span(file).first(8192 + 16384)));
  CHECK(std::equal(file.begin() + 8192 + 16384, file.end(), data.begin() + 8192 + 16384));
  disk.drain();
  CHECK(disk.in_flight() == 0);
}

TEST_CASE("read-only disk backend refuses writes at the backend too", "[block]") {
  ScratchDir dir;
  auto path = make_image(dir, "c.img", 1 << 20);
  auto file = petrel::virtio::DiskFile::open(path, true, false);
  REQUIRE(file.ok());
  CHECK(file->read_only());
  auto data = pattern(512, 1);
  DiskOp op{DiskOpKind::kWrite, 0, 512, {iovec{data.data(), 512}}, false, false};
  CHECK(petrel::virtio::DiskFileSync::perform(*file, op) == EROFS);
  CHECK(all_zero(read_file_range(path, 0, 512)));
}

TEST_CASE("uring engine: many ops in flight complete on the loop", "[block]") {
  ScratchDir dir;
  auto path = make_image(dir, "d.img", 8 << 20);
  boost::asio::io_context io;  // outlives the backend
  auto file = petrel::virtio::DiskFile::open(path, false, false);
  REQUIRE(file.ok());
  auto uring = petrel::virtio::DiskFileUring::create(std::move(file).value(), 64);
  REQUIRE(uring.ok());
  std::vector<DiskCompletion> done;
  REQUIRE((*uring)
              ->attach(io,
                       [&](std::span<const DiskCompletion> c) {
                         done.insert(done.end(), c.begin(), c.end());
                       })
              .ok());
  std::vector<std::vector<std::byte>> bufs;
  for (int i = 0; i < 64; ++i) {
    bufs.push_back(pattern(4096, static_cast<uint8_t>(i)));
  }
  for (int i = 0; i < 64; ++i) {
    auto& b = bufs[static_cast<size_t>(i)];
    REQUIRE((*uring)
                ->submit(DiskOp{DiskOpKind::kWrite,
                                static_cast<uint64_t>(i) * 8192,
                                4096,
                                {iovec{b.data(), b.size()}},
                                false,
                                true},
                         static_cast<uint64_t>(i))
                .ok());
  }
  CHECK((*uring)->in_flight() == 64);
  (*uring)->commit();
  CHECK(done.empty());  // completions only come through the loop
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (done.size() < 64 && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(std::chrono::milliseconds(10));
  }
  REQUIRE(done.size() == 64);
  for (const auto& c : done) {
    CHECK(c.error == 0);
  }
  for (int i = 0; i < 64; ++i) {
    CHECK(read_file_range(path, static_cast<uint64_t>(i) * 8192, 4096) ==
          bufs[static_cast<size_t>(i)]);
  }
  CHECK(allocated_bytes(path) <= 64 * 4096 + 64 * 1024);
}

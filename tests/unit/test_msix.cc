// MSI-X table/PBA/mask semantics (PCI Local Bus 3.0 section 6.8.2) and the GSI routing table
// that carries the vectors to KVM.
#include <sys/eventfd.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <vector>

#include "devices/msix.h"
#include "vmm/base/event_fd.h"
#include "vmm/gsi_router.h"

using petrel::Error;
using petrel::ErrorCode;
using petrel::EventFd;
using petrel::GsiRouter;
using petrel::MsiController;
using petrel::MsiMessage;
using petrel::MsiVector;
using petrel::Msix;
using petrel::Result;

namespace {

struct VectorLog {
  std::vector<MsiMessage> routes;
  int fired = 0;
  MsiMessage fired_with;
};

class RecordingVector : public MsiVector {
 public:
  explicit RecordingVector(VectorLog& log) : log_(log) {}
  Result<void> set_route(const MsiMessage& message) override {
    log_.routes.push_back(message);
    current_ = message;
    return {};
  }
  Result<void> trigger() override {
    ++log_.fired;
    log_.fired_with = current_;
    return {};
  }

 private:
  VectorLog& log_;
  MsiMessage current_;
};

class RecordingController : public MsiController {
 public:
  Result<std::unique_ptr<MsiVector>> allocate_vector() override {
    logs.push_back(std::make_unique<VectorLog>());
    return std::unique_ptr<MsiVector>(std::make_unique<RecordingVector>(*logs.back()));
  }
  std::vector<std::unique_ptr<VectorLog>> logs;
};

// Like KvmMsiController, minus KVM: a GSI from a GsiRouter and an EventFd per vector.
class RouterVector : public MsiVector {
 public:
  RouterVector(GsiRouter& router, uint32_t gsi, EventFd fd)
      : router_(router), gsi_(gsi), fd_(std::move(fd)) {}
  ~RouterVector() override { (void)router_.release(gsi_); }
  Result<void> set_route(const MsiMessage& message) override {
    return router_.set_msi_route(gsi_, message);
  }
  Result<void> trigger() override { return fd_.signal(); }
  const EventFd& fd() const { return fd_; }
  uint32_t gsi() const { return gsi_; }

 private:
  GsiRouter& router_;
  uint32_t gsi_;
  EventFd fd_;
};

class RouterController : public MsiController {
 public:
  explicit RouterController(GsiRouter& router) : router_(router) {}
  Result<std::unique_ptr<MsiVector>> allocate_vector() override {
    PETREL_TRY_ASSIGN(uint32_t gsi, router_.allocate());
    PETREL_TRY_ASSIGN(EventFd fd, EventFd::create(EFD_NONBLOCK));
    auto v = std::make_unique<RouterVector>(router_, gsi, std::move(fd));
    vectors.push_back(v.get());
    return std::unique_ptr<MsiVector>(std::move(v));
  }
  std::vector<RouterVector*> vectors;

 private:
  GsiRouter& router_;
};

void write32(Msix& msix, uint64_t offset, uint32_t value) {
  msix.write_table(offset, std::as_bytes(std::span(&value, 1)));
}

uint32_t read32(const Msix& msix, uint64_t offset) {
  uint32_t value = 0;
  msix.read_table(offset, std::as_writable_bytes(std::span(&value, 1)));
  return value;
}

uint64_t pba(const Msix& msix) {
  uint64_t value = 0;
  msix.read_pba(0, std::as_writable_bytes(std::span(&value, 1)));
  return value;
}

void program(Msix& msix, uint16_t vector, uint64_t address, uint32_t data) {
  write32(msix, vector * 16 + 0, static_cast<uint32_t>(address));
  write32(msix, vector * 16 + 4, static_cast<uint32_t>(address >> 32));
  write32(msix, vector * 16 + 8, data);
}

void set_masked(Msix& msix, uint16_t vector, bool masked) {
  write32(msix, vector * 16 + 12, masked ? 1 : 0);
}

std::unique_ptr<Msix> make(MsiController& controller, uint16_t vectors) {
  auto msix = Msix::create(controller, vectors);
  REQUIRE(msix);
  return std::move(msix).value();
}

}  // namespace

TEST_CASE("msix: capability body and initial table", "[msix]") {
  RecordingController controller;
  auto msix = make(controller, 3);
  CHECK(controller.logs.size() == 3);
  CHECK(msix->table_bytes() == 48);
  CHECK(msix->pba_bytes() == 8);
  const auto body = msix->capability_body(0, 0x4000, 0, 0x5000);
  REQUIRE(body.size() == 10);
  uint16_t control;
  uint32_t table;
  uint32_t pba_reg;
  std::memcpy(&control, body.data(), 2);
  std::memcpy(&table, body.data() + 2, 4);
  std::memcpy(&pba_reg, body.data() + 6, 4);
  CHECK(control == 2);  // table size - 1, disabled, not masked
  CHECK(table == 0x4000);
  CHECK(pba_reg == 0x5000);
  CHECK(msix->capability_body(2, 0x100, 3, 0x800)[2] == std::byte{0x02});
  const auto mask = Msix::capability_writable();
  CHECK(mask[0] == std::byte{0});
  CHECK(mask[1] == std::byte{0xc0});
  // Every entry starts masked (vector control bit 0), with address and data 0.
  for (uint16_t v = 0; v < 3; ++v) {
    CHECK(read32(*msix, v * 16 + 12) == 1);
    CHECK(read32(*msix, v * 16 + 8) == 0);
  }
  CHECK_FALSE(Msix::create(controller, 0));
  CHECK_FALSE(Msix::create(controller, 2049));
}

TEST_CASE("msix: table entries are readable and only the mask bit of control is", "[msix]") {
  RecordingController controller;
  auto msix = make(controller, 2);
  program(*msix, 1, 0x1'fee0'1000, 0x4041);
  write32(*msix, 16 + 12, 0xfffffffe);
  CHECK(read32(*msix, 16 + 0) == 0xfee01000);
  CHECK(read32(*msix, 16 + 4) == 1);
  CHECK(read32(*msix, 16 + 8) == 0x4041);
  CHECK(read32(*msix, 16 + 12) == 0);
  uint64_t q = 0;
  msix->read_table(16, std::as_writable_bytes(std::span(&q, 1)));
  CHECK(q == 0x1'fee0'1000);
  // Outside the table: reads 0, writes ignored, nothing crashes.
  CHECK(read32(*msix, 32) == 0);
  const std::array<std::byte, 8> ones{std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                      std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                      std::byte{0xff}, std::byte{0xff}};
  msix->write_table(28, ones);  // straddles the end: only the in-table bytes land
  CHECK(read32(*msix, 28) == 1);
  write32(*msix, ~uint64_t{0} - 1, 0xffffffff);
  CHECK(read32(*msix, ~uint64_t{0} - 1) == 0);
  // Nothing was routed or fired: MSI-X is disabled.
  CHECK(controller.logs[1]->routes.empty());
  CHECK(controller.logs[1]->fired == 0);
}

TEST_CASE("msix: disabled vectors do not fire", "[msix]") {
  RecordingController controller;
  auto msix = make(controller, 2);
  program(*msix, 0, 0xfee00000, 0x30);
  set_masked(*msix, 0, false);
  CHECK_FALSE(msix->trigger(0));
  CHECK(controller.logs[0]->fired == 0);
  CHECK(pba(*msix) == 0);
  msix->set_message_control(Msix::kControlEnable);
  CHECK(msix->enabled());
  CHECK_FALSE(msix->trigger(2));  // out of range
  CHECK(msix->trigger(0));
  CHECK(controller.logs[0]->fired == 1);
  CHECK(controller.logs[0]->fired_with == MsiMessage{0xfee00000, 0x30});
}

TEST_CASE("msix: a masked vector goes pending and fires when unmasked", "[msix]") {
  RecordingController controller;
  auto msix = make(controller, 3);
  msix->set_message_control(Msix::kControlEnable);
  CHECK(msix->trigger(1));  // masked from reset
  CHECK(controller.logs[1]->fired == 0);
  CHECK(msix->pending(1));
  CHECK(pba(*msix) == 0b010);
  // Program while masked: no route update yet.
  program(*msix, 1, 0xfee00000, 0x41);
  CHECK(controller.logs[1]->routes.empty());
  set_masked(*msix, 1, false);
  REQUIRE(controller.logs[1]->routes.size() == 1);
  CHECK(controller.logs[1]->routes[0] == MsiMessage{0xfee00000, 0x41});
  CHECK(controller.logs[1]->fired == 1);
  CHECK(controller.logs[1]->fired_with == MsiMessage{0xfee00000, 0x41});
  CHECK_FALSE(msix->pending(1));
  CHECK(pba(*msix) == 0);
  // Unmasked: fires at once, without another route update.
  CHECK(msix->trigger(1));
  CHECK(controller.logs[1]->fired == 2);
  CHECK(controller.logs[1]->routes.size() == 1);
  // Mask again, fire twice: one pending bit, one delivery on unmask.
  set_masked(*msix, 1, true);
  CHECK(msix->trigger(1));
  CHECK(msix->trigger(1));
  CHECK(controller.logs[1]->fired == 2);
  set_masked(*msix, 1, false);
  CHECK(controller.logs[1]->fired == 3);
  // Changing an unmasked entry re-routes it.
  write32(*msix, 16 + 8, 0x42);
  REQUIRE(controller.logs[1]->routes.size() == 2);
  CHECK(controller.logs[1]->routes[1].data == 0x42);
  // Other vectors were untouched.
  CHECK(controller.logs[0]->fired == 0);
  CHECK(controller.logs[2]->fired == 0);
}

TEST_CASE("msix: the function mask holds every vector pending", "[msix]") {
  RecordingController controller;
  auto msix = make(controller, 70);  // two PBA qwords
  CHECK(msix->pba_bytes() == 16);
  program(*msix, 0, 0xfee00000, 0x50);
  program(*msix, 65, 0xfee00000, 0x51);
  set_masked(*msix, 0, false);
  set_masked(*msix, 65, false);
  msix->set_message_control(Msix::kControlEnable | Msix::kControlFunctionMask);
  CHECK(msix->trigger(0));
  CHECK(msix->trigger(65));
  CHECK(controller.logs[0]->fired == 0);
  CHECK(controller.logs[65]->fired == 0);
  uint64_t second = 0;
  msix->read_pba(8, std::as_writable_bytes(std::span(&second, 1)));
  CHECK(pba(*msix) == 1);
  CHECK(second == 0b10);
  msix->set_message_control(Msix::kControlEnable);
  CHECK(controller.logs[0]->fired == 1);
  CHECK(controller.logs[65]->fired == 1);
  CHECK(controller.logs[65]->fired_with == MsiMessage{0xfee00000, 0x51});
  CHECK(pba(*msix) == 0);
  // Disabling MSI-X: trigger refuses (the caller falls back), nothing pends.
  msix->set_message_control(0);
  CHECK_FALSE(msix->trigger(0));
  CHECK_FALSE(msix->pending(0));
}

TEST_CASE("gsi router: the irqchip routes are always in the table", "[msix]") {
  std::vector<std::vector<kvm_irq_routing_entry>> commits;
  GsiRouter router(
      [&](std::span<const kvm_irq_routing_entry> e) -> Result<void> {
        commits.emplace_back(e.begin(), e.end());
        return {};
      },
      64);
  REQUIRE(router.install_defaults());
  REQUIRE(commits.size() == 1);
  const auto& table = commits[0];
  CHECK(table.size() == 16 * 2 + 8);
  auto count = [&](uint32_t gsi, uint32_t chip, uint32_t pin) {
    return std::count_if(table.begin(), table.end(), [&](const kvm_irq_routing_entry& e) {
      return e.gsi == gsi && e.type == KVM_IRQ_ROUTING_IRQCHIP && e.u.irqchip.irqchip == chip &&
             e.u.irqchip.pin == pin;
    });
  };
  for (uint32_t gsi = 0; gsi < 24; ++gsi) {
    INFO("gsi " << gsi);
    CHECK(count(gsi, KVM_IRQCHIP_IOAPIC, gsi) == 1);
    if (gsi < 8) {
      CHECK(count(gsi, KVM_IRQCHIP_PIC_MASTER, gsi) == 1);
    } else if (gsi < 16) {
      CHECK(count(gsi, KVM_IRQCHIP_PIC_SLAVE, gsi - 8) == 1);
    }
  }
  CHECK(count(16, KVM_IRQCHIP_PIC_SLAVE, 0) == 0);
  CHECK(count(16, KVM_IRQCHIP_PIC_MASTER, 0) == 0);
}

TEST_CASE("gsi router: MSI routes from GSI 24, updates and failures", "[msix]") {
  std::vector<std::vector<kvm_irq_routing_entry>> commits;
  bool fail = false;
  GsiRouter router(
      [&](std::span<const kvm_irq_routing_entry> e) -> Result<void> {
        if (fail) {
          return Error(ErrorCode::kKvm, "refused");
        }
        commits.emplace_back(e.begin(), e.end());
        return {};
      },
      27);
  auto a = router.allocate();
  auto b = router.allocate();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == 24);
  CHECK(*b == 25);
  CHECK(commits.empty());  // no route yet, nothing to commit
  REQUIRE(router.set_msi_route(*b, MsiMessage{0x1'fee0'2000, 0x4031}));
  REQUIRE(commits.size() == 1);
  CHECK(commits[0].size() == 41);
  const kvm_irq_routing_entry& e = commits[0].back();
  CHECK(e.gsi == 25);
  CHECK(e.type == KVM_IRQ_ROUTING_MSI);
  CHECK(e.u.msi.address_lo == 0xfee02000);
  CHECK(e.u.msi.address_hi == 1);
  CHECK(e.u.msi.data == 0x4031);
  // The same route again: no commit.
  REQUIRE(router.set_msi_route(*b, MsiMessage{0x1'fee0'2000, 0x4031}));
  CHECK(commits.size() == 1);
  // A refused commit keeps the previous table and route.
  fail = true;
  CHECK_FALSE(router.set_msi_route(*b, MsiMessage{0xfee00000, 1}));
  fail = false;
  CHECK(router.committed().back().u.msi.data == 0x4031);
  REQUIRE(router.set_msi_route(*a, MsiMessage{0xfee00000, 0x22}));
  CHECK(commits.back().size() == 42);
  // Limit reached, then a released GSI is reused; releasing a routed GSI drops its route.
  REQUIRE(router.allocate());
  CHECK_FALSE(router.allocate());
  REQUIRE(router.release(*a));
  CHECK(commits.back().size() == 41);
  CHECK(commits.back().back().gsi == 25);
  auto again = router.allocate();
  REQUIRE(again);
  CHECK(*again == 24);
  CHECK_FALSE(router.release(100));
  CHECK_FALSE(router.set_msi_route(100, MsiMessage{}));
}

TEST_CASE("gsi router: its lifetime token expires with it", "[msix]") {
  std::weak_ptr<const void> token;
  {
    GsiRouter router([](std::span<const kvm_irq_routing_entry>) -> Result<void> { return {}; }, 64);
    token = router.lifetime();
    CHECK_FALSE(token.expired());
  }
  CHECK(token.expired());
}

TEST_CASE("msix through the GSI router: unmask routes the GSI, trigger signals", "[msix]") {
  GsiRouter router([](std::span<const kvm_irq_routing_entry>) -> Result<void> { return {}; }, 1024);
  REQUIRE(router.install_defaults());
  RouterController controller(router);
  {
    auto msix = make(controller, 2);
    REQUIRE(controller.vectors.size() == 2);
    CHECK(controller.vectors[0]->gsi() == 24);
    CHECK(controller.vectors[1]->gsi() == 25);
    msix->set_message_control(Msix::kControlEnable);
    program(*msix, 1, 0xfee00000, 0x4025);
    CHECK(msix->trigger(1));
    CHECK(router.committed().size() == 40);  // masked: no MSI route yet
    CHECK(*controller.vectors[1]->fd().consume() == 0);
    set_masked(*msix, 1, false);
    auto table = router.committed();
    REQUIRE(table.size() == 41);
    CHECK(table.back().gsi == 25);
    CHECK(table.back().u.msi.data == 0x4025);
    CHECK(*controller.vectors[1]->fd().consume() == 1);  // the pending one
    CHECK(msix->trigger(1));
    CHECK(msix->trigger(1));
    CHECK(*controller.vectors[1]->fd().consume() == 2);
    CHECK(*controller.vectors[0]->fd().consume() == 0);
  }
  // Dropping the table released both GSIs and their routes.
  CHECK(router.committed().size() == 40);
  auto gsi = router.allocate();
  REQUIRE(gsi);
  CHECK(*gsi == 24);
}

#include "vmm/kvm_msi_controller.h"

#include <sys/eventfd.h>

#include <memory>

#include <spdlog/spdlog.h>

#include "vmm/base/event_fd.h"

namespace petrel {

namespace {

class KvmMsiVector final : public MsiVector {
 public:
  KvmMsiVector(const KvmVm& vm, GsiRouter& router, uint32_t gsi, EventFd fd)
      : vm_(vm), router_(router), router_alive_(router.lifetime()), gsi_(gsi), fd_(std::move(fd)) {}
  KvmMsiVector(const KvmMsiVector&) = delete;
  KvmMsiVector& operator=(const KvmMsiVector&) = delete;

  ~KvmMsiVector() override {
    if (auto r = vm_.remove_irqfd(fd_, gsi_); !r) {
      spdlog::warn("msi: {}", r.error().to_string());
    }
    if (router_alive_.expired()) {
      return;  // the routing table went with the router
    }
    if (auto r = router_.release(gsi_); !r) {
      spdlog::warn("msi: {}", r.error().to_string());
    }
  }

  Result<void> set_route(const MsiMessage& message) override {
    if (router_alive_.expired()) {
      return Error(ErrorCode::kState, "MSI route change after the GSI router is gone");
    }
    return router_.set_msi_route(gsi_, message);
  }
  Result<void> trigger() override { return fd_.signal(); }

 private:
  const KvmVm& vm_;
  GsiRouter& router_;
  std::weak_ptr<const void> router_alive_;
  uint32_t gsi_;
  EventFd fd_;
};

}  // namespace

Result<std::unique_ptr<MsiVector>> KvmMsiController::allocate_vector() {
  PETREL_TRY_ASSIGN(uint32_t gsi, router_.allocate());
  auto fd = EventFd::create(EFD_NONBLOCK);
  if (!fd) {
    (void)router_.release(gsi);
    return std::move(fd).error();
  }
  if (auto r = vm_.add_irqfd(*fd, gsi); !r) {
    (void)router_.release(gsi);
    return std::move(r).error();
  }
  return std::unique_ptr<MsiVector>(
      std::make_unique<KvmMsiVector>(vm_, router_, gsi, std::move(fd).value()));
}

}  // namespace petrel

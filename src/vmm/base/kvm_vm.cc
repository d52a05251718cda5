#include "vmm/base/kvm_vm.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "vmm/base/kvm_vcpu.h"

namespace petrel {

int KvmVm::check_extension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<void> KvmVm::enable_cap(uint32_t cap, uint64_t arg0) const {
  kvm_enable_cap req{};
  req.cap = cap;
  req.args[0] = arg0;
  if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &req) < 0) {
    return Error::from_errno(fmt::format("KVM_ENABLE_CAP {}", cap), errno);
  }
  return {};
}

Result<void> KvmVm::set_memory_region(uint32_t slot, GuestAddress guest, uint64_t size, void* host,
                                      uint32_t flags) const {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest.value();
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return Error::from_errno(
        fmt::format("KVM_SET_USER_MEMORY_REGION slot {} at {:#x}", slot, guest.value()), errno);
  }
  return {};
}

Result<void> KvmVm::set_tss_address(GuestAddress addr) const {
  if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, addr.value()) < 0) {
    return Error::from_errno("KVM_SET_TSS_ADDR", errno);
  }
  return {};
}

Result<void> KvmVm::set_identity_map_address(GuestAddress addr) const {
  uint64_t value = addr.value();
  if (::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &value) < 0) {
    return Error::from_errno("KVM_SET_IDENTITY_MAP_ADDR", errno);
  }
  return {};
}

Result<void> KvmVm::create_irqchip() const {
  if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) {
    return Error::from_errno("KVM_CREATE_IRQCHIP", errno);
  }
  return {};
}

Result<void> KvmVm::create_pit() const {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  if (::ioctl(fd_.get(), KVM_CREATE_PIT2, &config) < 0) {
    return Error::from_errno("KVM_CREATE_PIT2", errno);
  }
  return {};
}

Result<void> KvmVm::irq_line(uint32_t gsi, bool level) const {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  if (::ioctl(fd_.get(), KVM_IRQ_LINE, &irq) < 0) {
    return Error::from_errno(fmt::format("KVM_IRQ_LINE {}", gsi), errno);
  }
  return {};
}

size_t KvmVm::xsave_size() const {
  const int size = check_extension(KVM_CAP_XSAVE2);
  return std::max(sizeof(kvm_xsave), static_cast<size_t>(std::max(size, 0)));
}

Result<kvm_irqchip> KvmVm::get_irqchip(uint32_t chip_id) const {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  if (::ioctl(fd_.get(), KVM_GET_IRQCHIP, &chip) < 0) {
    return Error::from_errno(fmt::format("KVM_GET_IRQCHIP chip {}", chip_id), errno);
  }
  return chip;
}

Result<void> KvmVm::set_irqchip(const kvm_irqchip& chip) const {
  if (::ioctl(fd_.get(), KVM_SET_IRQCHIP, &chip) < 0) {
    return Error::from_errno(fmt::format("KVM_SET_IRQCHIP chip {}", chip.chip_id), errno);
  }
  return {};
}

Result<kvm_pit_state2> KvmVm::get_pit2() const {
  kvm_pit_state2 pit{};
  if (::ioctl(fd_.get(), KVM_GET_PIT2, &pit) < 0) {
    return Error::from_errno("KVM_GET_PIT2", errno);
  }
  return pit;
}

Result<void> KvmVm::set_pit2(const kvm_pit_state2& pit) const {
  if (::ioctl(fd_.get(), KVM_SET_PIT2, &pit) < 0) {
    return Error::from_errno("KVM_SET_PIT2", errno);
  }
  return {};
}

Result<kvm_clock_data> KvmVm::get_clock() const {
  kvm_clock_data clock{};
  if (::ioctl(fd_.get(), KVM_GET_CLOCK, &clock) < 0) {
    return Error::from_errno("KVM_GET_CLOCK", errno);
  }
  return clock;
}

Result<void> KvmVm::set_clock(const kvm_clock_data& clock) const {
  if (::ioctl(fd_.get(), KVM_SET_CLOCK, &clock) < 0) {
    return Error::from_errno("KVM_SET_CLOCK", errno);
  }
  return {};
}

Result<KvmVcpu> KvmVm::create_vcpu(uint32_t id) const {
  int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, id);
  if (fd < 0) {
    return Error::from_errno(fmt::format("KVM_CREATE_VCPU {}", id), errno);
  }
  UniqueFd vcpu_fd(fd);
  PETREL_TRY_ASSIGN(auto run,
                    MmapRegion::map_fd(fd, vcpu_run_size_, PROT_READ | PROT_WRITE, MAP_SHARED));
  return KvmVcpu(id, std::move(vcpu_fd), std::move(run));
}

namespace {

kvm_ioeventfd make_ioeventfd(const EventFd& fd, GuestAddress addr, uint32_t len,
                             std::optional<uint64_t> datamatch, bool pio) {
  kvm_ioeventfd req{};
  req.addr = addr.value();
  req.len = len;
  req.fd = fd.fd();
  if (datamatch) {
    req.datamatch = *datamatch;
    req.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  }
  if (pio) {
    req.flags |= KVM_IOEVENTFD_FLAG_PIO;
  }
  return req;
}

}  // namespace

Result<void> KvmVm::add_ioeventfd(const EventFd& fd, GuestAddress addr, uint32_t len,
                                  std::optional<uint64_t> datamatch, bool pio) const {
  kvm_ioeventfd req = make_ioeventfd(fd, addr, len, datamatch, pio);
  if (::ioctl(fd_.get(), KVM_IOEVENTFD, &req) < 0) {
    return Error::from_errno(
        fmt::format("KVM_IOEVENTFD {} {:#x} len {}", pio ? "pio" : "mmio", addr.value(), len),
        errno);
  }
  return {};
}

Result<void> KvmVm::remove_ioeventfd(const EventFd& fd, GuestAddress addr, uint32_t len,
                                     std::optional<uint64_t> datamatch, bool pio) const {
  kvm_ioeventfd req = make_ioeventfd(fd, addr, len, datamatch, pio);
  req.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (::ioctl(fd_.get(), KVM_IOEVENTFD, &req) < 0) {
    return Error::from_errno(fmt::format("KVM_IOEVENTFD deassign {} {:#x} len {}",
                                         pio ? "pio" : "mmio", addr.value(), len),
                             errno);
  }
  return {};
}

Result<void> KvmVm::add_irqfd(const EventFd& fd, uint32_t gsi) const {
  kvm_irqfd req{};
  req.fd = static_cast<uint32_t>(fd.fd());
  req.gsi = gsi;
  if (::ioctl(fd_.get(), KVM_IRQFD, &req) < 0) {
    return Error::from_errno(fmt::format("KVM_IRQFD gsi {}", gsi), errno);
  }
  return {};
}

Result<void> KvmVm::remove_irqfd(const EventFd& fd, uint32_t gsi) const {
  kvm_irqfd req{};
  req.fd = static_cast<uint32_t>(fd.fd());
  req.gsi = gsi;
  req.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (::ioctl(fd_.get(), KVM_IRQFD, &req) < 0) {
    return Error::from_errno(fmt::format("KVM_IRQFD deassign gsi {}", gsi), errno);
  }
  return {};
}

Result<void> KvmVm::set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const {
  // kvm_irq_routing ends in a flexible array; operator new's alignment covers both structs.
  std::vector<std::byte> buf(sizeof(kvm_irq_routing) +
                             entries.size() * sizeof(kvm_irq_routing_entry));
  auto* routing = reinterpret_cast<kvm_irq_routing*>(buf.data());
  routing->nr = static_cast<uint32_t>(entries.size());
  routing->flags = 0;
  if (!entries.empty()) {
    std::memcpy(routing->entries, entries.data(), entries.size_bytes());
  }
  if (::ioctl(fd_.get(), KVM_SET_GSI_ROUTING, routing) < 0) {
    return Error::from_errno(fmt::format("KVM_SET_GSI_ROUTING ({} entries)", entries.size()),
                             errno);
  }
  return {};
}

// ---- Dirty logging ----

Result<void> KvmVm::get_dirty_log(uint32_t slot, uint64_t slot_pages,
                                  std::span<uint64_t> bitmap) const {
  uint64_t words = slot_pages / 64 + (slot_pages % 64 != 0 ? 1 : 0);
  if (bitmap.size() < words) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("KVM_GET_DIRTY_LOG slot {}: {} pages need {} bitmap words, got {}",
                             slot, slot_pages, words, bitmap.size()));
  }
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  if (::ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log) < 0) {
    return Error::from_errno(fmt::format("KVM_GET_DIRTY_LOG slot {}", slot), errno);
  }
  return {};
}

}  // namespace petrel

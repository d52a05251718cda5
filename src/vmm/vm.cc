#include "vmm/vm.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "devices/exit_device.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "vmm/acpi_tables.h"
#include "vmm/base/read_file.h"
#include "vmm/boot_info.h"
#include "vmm/boot_msrs.h"
#include "vmm/console_input.h"
#include "vmm/cpuid.h"
#include "vmm/guest_abi.h"
#include "vmm/kvm_irq_line.h"
#include "vmm/layout.h"
#include "vmm/linux_boot.h"
#include "vmm/long_mode.h"
#include "vmm/mp_table.h"
#include "vmm/pvh.h"

namespace petrel {

namespace {

constexpr uint32_t kCom1Irq = 4;
constexpr uint32_t kKeyboardIrq = 1;
// How long pause() waits for in-flight device I/O (a slow disk) to complete.
constexpr std::chrono::seconds kQuiesceTimeout{10};

Result<void> require_cap(const KvmSystem& kvm, int cap, const char* name) {
  if (kvm.check_extension(cap) <= 0) {
    return Error(ErrorCode::kKvm, fmt::format("KVM lacks the required capability {}", name));
  }
  return {};
}

Result<UniqueFd> open_serial_output(const SerialConfig& serial) {
  switch (serial.mode) {
    case SerialMode::kStdio: {
      int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
      if (fd < 0) {
        return Error::from_errno("dup stdout for the serial console", errno);
      }
      return UniqueFd(fd);
    }
    case SerialMode::kFile: {
      int fd = ::open(serial.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
      if (fd < 0) {
        return Error::from_errno(fmt::format("serial output {}", serial.path.string()), errno);
      }
      return UniqueFd(fd);
    }
    case SerialMode::kNone:
    case SerialMode::kSocket:  // Vm::setup_devices connects the UART to its SerialSocket
      break;
  }
  return UniqueFd();
}

}  // namespace

Vm::Vm(KvmSystem kvm, KvmVm vm, PvmHost pvm, GuestMemory memory, VmHooks hooks)
    : kvm_(std::move(kvm)),
      vm_(std::move(vm)),
      pvm_(pvm),
      memory_(std::move(memory)),
      hooks_(std::move(hooks)) {}

Vm::~Vm() {
  finish();
}

Result<std::unique_ptr<Vm>> Vm::create(const VmConfig& config, VmHooks hooks) {
  PETREL_TRY_ASSIGN(GuestMemory memory,
                    GuestMemory::create_anonymous(layout::ram_regions(config.memory_bytes)));
  PETREL_TRY_ASSIGN(auto machine, create_machine(config, std::move(memory), std::move(hooks)));
  PETREL_TRY(machine->load_guest(config));
  return machine;
}

Result<std::unique_ptr<Vm>> Vm::create_machine(const VmConfig& config, GuestMemory memory,
                                               VmHooks hooks) {
  PETREL_TRY_ASSIGN(KvmSystem kvm, KvmSystem::open());
  PETREL_TRY(require_cap(kvm, KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"));
  PETREL_TRY(require_cap(kvm, KVM_CAP_PIT2, "KVM_CAP_PIT2"));
  PETREL_TRY(require_cap(kvm, KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"));
  PETREL_TRY(require_cap(kvm, KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"));
  PETREL_TRY(require_cap(kvm, KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"));
  int max_vcpus = kvm.check_extension(KVM_CAP_MAX_VCPUS);
  if (max_vcpus > 0 && config.vcpus > static_cast<uint32_t>(max_vcpus)) {
    return Error(
        ErrorCode::kUnsupported,
        fmt::format("{} vCPUs requested; this host's KVM allows {}", config.vcpus, max_vcpus));
  }
  PETREL_TRY_ASSIGN(PvmHost pvm, PvmHost::detect(kvm));
  PETREL_TRY_ASSIGN(KvmVm kvm_vm, kvm.create_vm());
  PETREL_TRY(kvm_vm.set_tss_address(layout::kKvmTss));
  PETREL_TRY(kvm_vm.set_identity_map_address(layout::kKvmIdentityMap));
  PETREL_TRY(kvm_vm.create_irqchip());
  PETREL_TRY(kvm_vm.create_pit());

  uint32_t slot = 0;
  for (const auto& region : memory.regions()) {
    PETREL_TRY(kvm_vm.set_memory_region(slot++, region.start(), region.size(), region.host_base()));
  }

  auto machine = std::make_unique<Vm>(std::move(kvm), std::move(kvm_vm), pvm, std::move(memory),
                                      std::move(hooks));
  PETREL_TRY(machine->setup_devices(config));
  return machine;
}

Result<void> Vm::setup_devices(const VmConfig& config) {
  UniqueFd serial_out;
  if (config.serial.mode == SerialMode::kSocket) {
    PETREL_TRY_ASSIGN(serial_socket_, SerialSocket::create(io_, config.serial.path));
    serial_out = serial_socket_->uart_output();
  } else {
    PETREL_TRY_ASSIGN(serial_out, open_serial_output(config.serial));
  }
  serial_ = std::make_shared<Serial16550>(std::make_shared<KvmIrqLine>(vm_, kCom1Irq),
                                          std::move(serial_out));
  PETREL_TRY(pio_.insert(serial_, PETREL_PORT_COM1, 8));
  i8042_ = std::make_shared<I8042>(
      [this] {
        stop_.request({StopKind::kReset, 0, "guest reset through the i8042"});
      },
      std::make_shared<KvmIrqLine>(vm_, kKeyboardIrq));
  PETREL_TRY(pio_.insert(i8042_, PETREL_PORT_I8042_DATA, 5));
  auto exit_dev = std::make_shared<ExitDevice>([this](uint8_t status) {
    stop_.request(
        {StopKind::kGuestExit, status, fmt::format("guest exited with status {}", status)});
  });
  PETREL_TRY(pio_.insert(exit_dev, PETREL_PORT_EXIT, 4));
  auto pvpanic = std::make_shared<PvPanic>([this](uint8_t events) {
    if (hooks_.on_panic) {
      hooks_.on_panic(events);
    }
    // CRASH_LOADED alone means a crash kernel takes over: the guest goes on by itself.
    if ((events & PvPanic::kPanicked) != 0) {
      stop_.request({StopKind::kPanic, 0, "the guest panicked (pvpanic)"});
    }
  });
  PETREL_TRY(pio_.insert(pvpanic, PETREL_PORT_PVPANIC, PvPanic::kPortCount));
  PETREL_TRY_ASSIGN(virtio_, VirtioDevices::create(config, vm_, memory_, io_, pio_, mmio_));
  if (hooks_.on_device_error) {
    virtio_->set_error_sink(hooks_.on_device_error);
  }
  return {};
}

Result<void> Vm::load_guest(const VmConfig& config) {
  PETREL_TRY_ASSIGN(auto image, read_file(config.kernel, config.memory_bytes));
  auto loaded = load_kernel(memory_, image);
  if (!loaded) {
    return std::move(loaded).error().context(
        fmt::format("loading kernel {}", config.kernel.string()));
  }
  const bool petrel_guest = loaded->protocol == BootProtocol::kPetrelGuest;
  const bool native_capable =
      petrel_guest && (*loaded->petrel_guest_flags & PETREL_GUEST_PVM_NATIVE) != 0;
  mode_ = pvm_.choose_mode(native_capable, config.pvm_mode == PvmMode::kEmulated);
  const bool native = mode_ == ExecMode::kPvmNative;
  spdlog::info("kernel {}: {}", config.kernel.string(), to_string(loaded->protocol));

  PETREL_TRY(
      write_long_mode_tables(memory_, config.memory_bytes + layout::kFourGiB.value(), native));
  PETREL_TRY(create_vcpus(config));
  const KvmVcpu& bsp = vcpus_.front()->kvm();
  if (petrel_guest) {
    if (!config.initrd.empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "an initrd is for Linux kernels; this kernel is a petrel test guest");
    }
    PETREL_TRY(write_boot_info(
        memory_, BootInfoParams{config.vcpus, native, layout::kPvmVifPage, config.cmdline}));
    return setup_long_mode_vcpu(
        bsp, LongModeEntry{loaded->entry, layout::kBootInfo, layout::kBootStackTop});
  }
  return boot_linux(config, *loaded);
}

Result<void> Vm::boot_linux(const VmConfig& config, const LoadedKernel& kernel) {
  std::string cmdline = config.cmdline;
  std::string_view extra = pvm_.linux_cmdline_extra(mode_);
  if (!extra.empty()) {
    cmdline += cmdline.empty() ? "" : " ";
    cmdline += extra;
  }
  PETREL_TRY(write_cmdline(memory_, cmdline, linux_cmdline_max(kernel.bzimage_header)));

  std::optional<InitrdLocation> initrd;
  if (!config.initrd.empty()) {
    PETREL_TRY_ASSIGN(auto bytes, read_file(config.initrd, config.memory_bytes));
    uint64_t max_end = kernel.bzimage_header ? uint64_t{kernel.bzimage_header->initrd_addr_max} + 1
                                             : layout::kFourGiB.value();
    auto placed = load_initrd(memory_, bytes, kernel.end, max_end);
    if (!placed) {
      return std::move(placed).error().context(
          fmt::format("loading initrd {}", config.initrd.string()));
    }
    initrd = *placed;
  }
  PETREL_TRY_ASSIGN(GuestAddress rsdp, write_acpi_tables(memory_, acpi_config(config)));
  PETREL_TRY(write_mp_table(memory_, config.vcpus));

  const KvmVcpu& bsp = vcpus_.front()->kvm();
  if (kernel.protocol == BootProtocol::kPvh) {
    PETREL_TRY(write_pvh_start_info(memory_, PvhParams{layout::kCmdline, initrd, rsdp}));
    return setup_pvh_vcpu(bsp, kernel.entry);
  }
  PETREL_TRY(write_zero_page(
      memory_, ZeroPageParams{kernel.bzimage_header, layout::kCmdline, initrd, rsdp}));
  return setup_long_mode_vcpu(
      bsp, LongModeEntry{kernel.entry, layout::kZeroPage, layout::kBootStackTop});
}

AcpiConfig Vm::acpi_config(const VmConfig& config) const {
  AcpiConfig acpi{config.vcpus};
  acpi.virtio_mmio = virtio_->acpi_mmio();
  acpi.pci = virtio_->has_pci();
  acpi.pvpanic = true;
  return acpi;
}

Result<void> Vm::create_vcpus(const VmConfig& config) {
  PETREL_TRY_ASSIGN(auto supported, kvm_.supported_cpuid());
  pvm_.adjust_cpuid(supported, mode_);
  PETREL_TRY_ASSIGN(auto msr_list, kvm_.msr_index_list());
  gate_ = std::make_unique<VcpuGate>(config.vcpus);
  for (uint32_t id = 0; id < config.vcpus; ++id) {
    PETREL_TRY_ASSIGN(KvmVcpu kvm_vcpu, vm_.create_vcpu(id));
    PETREL_TRY(kvm_vcpu.set_cpuid(vcpu_cpuid(supported, id, config.vcpus)));
    PETREL_TRY(set_boot_msrs(kvm_vcpu, msr_list));
    if (mode_ == ExecMode::kPvmNative && id == 0) {
      PETREL_TRY(pvm_.enable_native(kvm_vcpu, layout::kPvmVifPage));
    }
    vcpus_.push_back(std::make_unique<Vcpu>(
        std::move(kvm_vcpu), VcpuContext{&pio_, &mmio_, &memory_, &pvm_, &stop_, gate_.get(),
                                         [this] { return start_thread(ThreadKind::kVcpu); }}));
  }
  return {};
}

Result<void> Vm::start_thread(ThreadKind kind) const {
  return hooks_.on_thread_start ? hooks_.on_thread_start(kind) : ok();
}

void Vm::start(int console_fd) {
  Vcpu::install_kick_handler();
  work_.emplace(io_.get_executor());
  if (serial_socket_) {
    serial_socket_->start(serial_);
  } else if (console_fd >= 0) {
    auto input = ConsoleInput::create(io_, console_fd, serial_);
    if (input) {
      console_ = std::move(input).value();
    } else {
      spdlog::debug("no console input: {}", input.error().to_string());
    }
  }
  loop_ = std::jthread([this] {
    if (auto started = start_thread(ThreadKind::kEventLoop); !started) {
      // Still run the loop: finish() tears the devices down on it.
      stop_.request({StopKind::kHostError, 0, "event loop: " + started.error().to_string()});
    }
    io_.run();
  });
  spdlog::info("starting {} vCPU(s), {} mode", vcpus_.size(), to_string(mode_));
  for (auto& vcpu : vcpus_) {
    vcpu->start();
  }
}

StopReason Vm::run(int console_fd) {
  start(console_fd);
  StopReason reason = wait();
  finish();
  return reason;
}

void Vm::finish() {
  if (finished_) {
    return;
  }
  finished_ = true;
  stop_vcpus();
  if (!loop_.joinable()) {
    return;
  }
  // Tear the loop's objects down on the loop thread, then let it finish.
  boost::asio::post(io_, [this] {
    console_.reset();
    serial_socket_.reset();  // closes the client and unlinks the socket file
    virtio_->stop();         // resets active devices, cancels their waits
    work_.reset();
  });
  loop_.join();
}

Result<void> Vm::pause() {
  constexpr std::chrono::seconds kParkTimeout{5};
  gate_->close();
  for (auto& vcpu : vcpus_) {
    vcpu->kick();
  }
  if (!gate_->wait_parked(kParkTimeout)) {
    gate_->open();
    return Error(ErrorCode::kInternal,
                 fmt::format("the vCPUs did not stop within {} s", kParkTimeout.count()));
  }
  // No device may touch guest memory while paused (a snapshot or the last migration round
  // reads it): in-flight I/O completes, then the devices wait for unquiesce().
  if (auto quiet = virtio_->quiesce(kQuiesceTimeout); !quiet) {
    gate_->open();
    return std::move(quiet).error().context("pausing the devices");
  }
  return {};
}

void Vm::resume() {
  virtio_->unquiesce();
  gate_->open();
}

void Vm::send_ctrl_alt_del() {
  if (!i8042_->inject_ctrl_alt_del()) {
    spdlog::warn(
        "Ctrl-Alt-Del not delivered (the guest turned keyboard scanning off or does not read "
        "the keyboard): the shutdown can only end by its timeout");
  }
}

void Vm::request_dump() {
  for (auto& vcpu : vcpus_) {
    vcpu->request_dump();
  }
}

PageSkip Vm::page_skip() const {
  PageSkip skip;
  if (const auto* balloon = virtio_->balloon()) {
    skip.regions = balloon->ballooned_pages();
  }
  return skip;
}

void Vm::collect_metrics(VmMetrics& out) const {
  out.guest_memory_bytes = memory_.total_size();
  out.vcpus.clear();
  for (const auto& vcpu : vcpus_) {
    out.vcpus.push_back(vcpu->metrics());
  }
  out.disks = virtio_->disk_metrics();
  out.nets = virtio_->net_metrics();
  if (const auto* balloon = virtio_->balloon()) {
    const auto counters = balloon->counters();
    BalloonMetrics m;
    m.target = uint64_t{balloon->target_pages()} * kBalloonPageBytes;
    m.actual = uint64_t{balloon->actual_pages()} * kBalloonPageBytes;
    m.inflated_pages_total = counters.inflated_pages;
    m.deflated_pages_total = counters.deflated_pages;
    m.reported_pages_total = counters.reported_pages;
    m.ignored_pfns_total = counters.ignored_pfns;
    m.oom_deflated_pages_total = counters.oom_deflated_pages;
    out.balloon = m;
  }
}

void Vm::stop_vcpus() {
  if (!stop_.stopped()) {
    stop_.request({StopKind::kHostError, 0, "VM destroyed while running"});
  }
  if (gate_) {
    gate_->release_all();
  }
  for (auto& vcpu : vcpus_) {
    vcpu->kick();
  }
  for (auto& vcpu : vcpus_) {
    vcpu->join();
  }
}

}  // namespace petrel

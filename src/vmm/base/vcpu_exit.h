// Decoding of kvm_run after KVM_RUN returns (api.rst section 5, "The kvm_run structure").
// The spans point into the vCPU's kvm_run mapping: valid until the next KVM_RUN, and the
// handler fills `data` of a read in place for KVM to complete the guest instruction.
#pragma once

#include "vmm/base/kvm_abi.h"

#include <cstdint>
#include <span>
#include <string>
#include <variant>

namespace petrel {

struct IoExit {
  uint16_t port;
  uint8_t size;    // bytes per access: 1, 2 or 4
  uint32_t count;  // > 1 for rep ins/outs
  bool is_write;
  std::span<std::byte> data;  // size * count bytes
};

struct MmioExit {
  uint64_t address;
  bool is_write;
  std::span<std::byte> data;  // 1..8 bytes
};

struct HltExit {};
struct ShutdownExit {};  // triple fault or an unrecoverable guest state
struct IntrExit {};      // KVM_RUN interrupted by a signal / immediate_exit

struct SystemEventExit {
  uint32_t type;  // KVM_SYSTEM_EVENT_SHUTDOWN, _RESET, _CRASH, ...
};

struct InternalErrorExit {
  uint32_t suberror;  // KVM_INTERNAL_ERROR_*
  // For KVM_INTERNAL_ERROR_EMULATION with instruction bytes: the bytes KVM fetched.
  std::span<const uint8_t> insn_bytes;
};

struct FailEntryExit {
  uint64_t reason;  // hardware_entry_failure_reason
};

struct UnknownExit {
  uint32_t reason;  // a KVM_EXIT_* value petrel does not handle
};

using VcpuExit = std::variant<IoExit, MmioExit, HltExit, ShutdownExit, IntrExit, SystemEventExit,
                              InternalErrorExit, FailEntryExit, UnknownExit>;

// `run` is the vCPU's kvm_run mapping of `run_size` bytes; a malformed io.data_offset
// yields an UnknownExit rather than an out-of-bounds span.
VcpuExit decode_exit(kvm_run* run, size_t run_size);

std::string exit_reason_name(uint32_t reason);

}  // namespace petrel

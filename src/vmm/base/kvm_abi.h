// The KVM user-space ABI (<linux/kvm.h>), made right for C++. Include this, never
// <linux/kvm.h> directly.
//
// Linux 6.1's uapi headers declare flexible arrays with __DECLARE_FLEX_ARRAY, whose empty
// struct member has size 1 in C++: sizeof(kvm_cpuid2) and sizeof(kvm_msrs) come out wrong,
// and so do the ioctl numbers that encode them (KVM_GET_SUPPORTED_CPUID, KVM_GET_MSRS, ...),
// which KVM then rejects with EINVAL. Redefine the macro as a GNU zero-length array, which
// has the C layout.
#pragma once

#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#include <linux/kvm.h>

static_assert(sizeof(kvm_cpuid2) == 8, "kvm_cpuid2 must have its C layout");
static_assert(sizeof(kvm_msrs) == 8, "kvm_msrs must have its C layout");
static_assert(sizeof(kvm_msr_list) == 4, "kvm_msr_list must have its C layout");
static_assert(sizeof(kvm_irq_routing) == 8, "kvm_irq_routing must have its C layout");

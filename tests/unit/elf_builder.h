// ElfBuilder: ELF64 x86-64 executables built in memory for the ELF loader's unit tests,
// plus helpers to patch their headers into the malformed images the loader must refuse.
#pragma once

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/guest_abi.h"

namespace petrel::testing {

using Bytes = std::vector<std::byte>;

inline Bytes pattern(size_t n, uint8_t seed) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = std::byte(static_cast<uint8_t>(seed + i * 7));
  }
  return out;
}

template <typename T>
void append_obj(Bytes& out, const T& value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

inline void pad4(Bytes& out) {
  while (out.size() % 4 != 0) {
    out.push_back(std::byte{0});
  }
}

// One ELF note (gABI "Note Section"): header, NUL-terminated name and descriptor, each
// padded to 4 bytes.
inline Bytes note(const std::string& name, uint32_t type, const Bytes& desc) {
  Bytes out;
  Elf64_Nhdr hdr{};
  hdr.n_namesz = static_cast<Elf64_Word>(name.size() + 1);
  hdr.n_descsz = static_cast<Elf64_Word>(desc.size());
  hdr.n_type = type;
  append_obj(out, hdr);
  for (char c : name) {
    out.push_back(std::byte(static_cast<uint8_t>(c)));
  }
  out.push_back(std::byte{0});
  pad4(out);
  out.insert(out.end(), desc.begin(), desc.end());
  pad4(out);
  return out;
}

inline Bytes u32_bytes(uint32_t v) {
  Bytes out;
  append_obj(out, v);
  return out;
}

inline Bytes petrel_note(uint32_t flags) {
  return note(PETREL_NOTE_NAME, PETREL_NOTE_GUEST_KIT, u32_bytes(flags));
}

// Builds an ELF64 x86-64 executable: the ELF header, the program header table right after
// it, then each segment's file contents (p_offset and p_filesz are filled in).
class ElfBuilder {
 public:
  ElfBuilder& entry(uint64_t e) {
    entry_ = e;
    return *this;
  }
  // paddr == vaddr; memsz defaults to the data size.
  ElfBuilder& load(uint64_t paddr, Bytes data, uint64_t memsz = 0) {
    return segment(PT_LOAD, paddr, std::move(data), memsz);
  }
  ElfBuilder& notes(Bytes data) { return segment(PT_NOTE, 0, std::move(data), 0); }
  ElfBuilder& segment(uint32_t type, uint64_t paddr, Bytes data, uint64_t memsz) {
    Elf64_Phdr ph{};
    ph.p_type = type;
    ph.p_flags = PF_R;
    ph.p_vaddr = paddr;
    ph.p_paddr = paddr;
    ph.p_memsz = memsz != 0 ? memsz : data.size();
    ph.p_align = type == PT_LOAD ? 0x1000 : 4;
    phdrs_.push_back(ph);
    contents_.push_back(std::move(data));
    return *this;
  }

  Bytes build() const {
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry_;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<Elf64_Half>(phdrs_.size());

    Bytes out;
    append_obj(out, eh);
    uint64_t offset = sizeof(Elf64_Ehdr) + phdrs_.size() * sizeof(Elf64_Phdr);
    for (size_t i = 0; i < phdrs_.size(); ++i) {
      offset = (offset + 15) & ~uint64_t{15};
      Elf64_Phdr ph = phdrs_[i];
      ph.p_offset = offset;
      ph.p_filesz = contents_[i].size();
      append_obj(out, ph);
      offset += contents_[i].size();
    }
    for (const auto& c : contents_) {
      out.resize((out.size() + 15) & ~size_t{15});
      out.insert(out.end(), c.begin(), c.end());
    }
    return out;
  }

 private:
  uint64_t entry_ = 0x100000;  // layout::kKernelMin
  std::vector<Elf64_Phdr> phdrs_;
  std::vector<Bytes> contents_;
};

template <typename F>
void patch_ehdr(Bytes& image, F&& edit) {
  Elf64_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof(eh));
  edit(eh);
  std::memcpy(image.data(), &eh, sizeof(eh));
}

template <typename F>
void patch_phdr(Bytes& image, size_t index, F&& edit) {
  const size_t off = sizeof(Elf64_Ehdr) + index * sizeof(Elf64_Phdr);
  Elf64_Phdr ph;
  std::memcpy(&ph, image.data() + off, sizeof(ph));
  edit(ph);
  std::memcpy(image.data() + off, &ph, sizeof(ph));
}

}  // namespace petrel::testing

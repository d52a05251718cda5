#include "vmm/elf_loader.h"

#include <elf.h>

#include <cstring>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "vmm/guest_abi.h"
#include "vmm/layout.h"

namespace petrel {

namespace {

Error bad_elf(std::string msg) {
  return Error(ErrorCode::kInvalidArgument, std::move(msg));
}

template <typename T>
std::optional<T> read_at(std::span<const std::byte> image, uint64_t offset) {
  if (offset > image.size() || sizeof(T) > image.size() - offset) {
    return std::nullopt;
  }
  T value;
  std::memcpy(&value, image.data() + offset, sizeof(T));
  return value;
}

uint64_t align4(uint64_t v) {
  return (v + 3) & ~uint64_t{3};
}

constexpr uint32_t kXenElfnotePhys32Entry = 18;  // xen/include/public/elfnote.h

struct Notes {
  std::optional<uint32_t> petrel_flags;
  std::optional<uint32_t> pvh_entry;
};

// Walks one PT_NOTE segment (gABI "Note Section") for the petrel note and the PVH entry note
// (XEN_ELFNOTE_PHYS32_ENTRY, name "Xen"). A malformed note ends the walk.
void scan_notes(std::span<const std::byte> notes, Notes& found) {
  uint64_t off = 0;
  while (off + sizeof(Elf64_Nhdr) <= notes.size()) {
    auto hdr = read_at<Elf64_Nhdr>(notes, off);
    off += sizeof(Elf64_Nhdr);
    if (hdr->n_namesz > notes.size() || hdr->n_descsz > notes.size()) {
      return;
    }
    uint64_t name_end = off + align4(hdr->n_namesz);
    uint64_t desc_end = name_end + align4(hdr->n_descsz);
    if (desc_end > notes.size()) {
      return;
    }
    std::string_view name(reinterpret_cast<const char*>(notes.data() + off),
                          hdr->n_namesz > 0 ? hdr->n_namesz - 1 : 0);
    if (hdr->n_descsz >= sizeof(uint32_t)) {
      if (name == PETREL_NOTE_NAME && hdr->n_type == PETREL_NOTE_GUEST_KIT) {
        found.petrel_flags = read_at<uint32_t>(notes, name_end);
      } else if (name == "Xen" && hdr->n_type == kXenElfnotePhys32Entry) {
        found.pvh_entry = read_at<uint32_t>(notes, name_end);
      }
    }
    off = desc_end;
  }
}

}  // namespace

Result<LoadedElf> load_elf(const GuestMemory& mem, std::span<const std::byte> image) {
  auto ehdr = read_at<Elf64_Ehdr>(image, 0);
  if (!ehdr || std::memcmp(ehdr->e_ident, ELFMAG, SELFMAG) != 0) {
    return bad_elf("not an ELF file");
  }
  if (ehdr->e_ident[EI_CLASS] != ELFCLASS64 || ehdr->e_ident[EI_DATA] != ELFDATA2LSB ||
      ehdr->e_machine != EM_X86_64) {
    return bad_elf("not a 64-bit little-endian x86-64 ELF");
  }
  if (ehdr->e_type != ET_EXEC) {
    return bad_elf(fmt::format("ELF type {} is not an executable (ET_EXEC)", ehdr->e_type));
  }
  if (ehdr->e_phentsize != sizeof(Elf64_Phdr) || ehdr->e_phnum == 0) {
    return bad_elf("ELF has no usable program headers");
  }

  LoadedElf out{GuestAddress(ehdr->e_entry), GuestAddress(UINT64_MAX), GuestAddress(0),
                std::nullopt, std::nullopt};
  Notes notes;
  bool entry_loaded = false;
  for (uint16_t i = 0; i < ehdr->e_phnum; ++i) {
    auto phdr = read_at<Elf64_Phdr>(image, ehdr->e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    if (!phdr) {
      return bad_elf(fmt::format("program header {} lies past the end of the file", i));
    }
    if (phdr->p_offset > image.size() || phdr->p_filesz > image.size() - phdr->p_offset) {
      return bad_elf(fmt::format("segment {} lies past the end of the file (truncated image?)", i));
    }
    auto contents = image.subspan(phdr->p_offset, phdr->p_filesz);
    if (phdr->p_type == PT_NOTE) {
      scan_notes(contents, notes);
      continue;
    }
    if (phdr->p_type != PT_LOAD || phdr->p_memsz == 0) {
      continue;
    }
    if (phdr->p_filesz > phdr->p_memsz) {
      return bad_elf(fmt::format("segment {}: file size exceeds memory size", i));
    }
    GuestAddress start(phdr->p_paddr);
    if (start < layout::kKernelMin) {
      return Error(
          ErrorCode::kOutOfRange,
          fmt::format("segment {} at {:#x} is below the 1 MiB kernel minimum", i, start.value()));
    }
    auto dest = mem.slice_mut(start, phdr->p_memsz);
    if (!dest) {
      return Error(ErrorCode::kOutOfRange,
                   fmt::format("segment {} ({:#x} bytes at {:#x}) does not fit in guest memory", i,
                               phdr->p_memsz, start.value()));
    }
    std::memcpy(dest->data(), contents.data(), contents.size());
    std::memset(dest->data() + contents.size(), 0, phdr->p_memsz - phdr->p_filesz);
    out.lowest = std::min(out.lowest, start);
    out.end = std::max(out.end, start + phdr->p_memsz);
    // e_entry is physical in a Linux vmlinux (ENTRY(phys_startup_64)) but virtual in other
    // images; the vCPU starts with an identity map, so enter at the physical address.
    if (ehdr->e_entry >= phdr->p_paddr && ehdr->e_entry - phdr->p_paddr < phdr->p_memsz) {
      entry_loaded = true;
    } else if (ehdr->e_entry >= phdr->p_vaddr && ehdr->e_entry - phdr->p_vaddr < phdr->p_memsz) {
      entry_loaded = true;
      out.entry = start + (ehdr->e_entry - phdr->p_vaddr);
    }
  }
  out.petrel_guest_flags = notes.petrel_flags;
  if (notes.pvh_entry) {
    out.pvh_entry = GuestAddress(*notes.pvh_entry);
  }
  if (out.end == GuestAddress(0)) {
    return bad_elf("ELF has no loadable segment");
  }
  if (!entry_loaded) {
    return bad_elf(fmt::format("entry point {:#x} is not inside a loaded segment", ehdr->e_entry));
  }
  return out;
}

}  // namespace petrel

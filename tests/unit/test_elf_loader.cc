#include <elf.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "elf_builder.h"
#include "vmm/base/guest_memory.h"
#include "vmm/elf_loader.h"
#include "vmm/guest_abi.h"

using Catch::Contains;
using petrel::ErrorCode;
using petrel::GuestAddress;
using petrel::GuestMemory;
using petrel::GuestRegionSpec;
using petrel::load_elf;
using petrel::LoadedElf;
using petrel::testing::Bytes;
using petrel::testing::ElfBuilder;
using petrel::testing::note;
using petrel::testing::patch_ehdr;
using petrel::testing::patch_phdr;
using petrel::testing::pattern;
using petrel::testing::petrel_note;
using petrel::testing::u32_bytes;

namespace {

constexpr uint64_t kRamSize = 4ull << 20;
constexpr uint64_t kEntry = 0x100000;

// 4 MiB of RAM at 0, every byte 0xAA so that zeroing is visible.
GuestMemory make_ram() {
  std::array specs{GuestRegionSpec{GuestAddress(0), kRamSize}};
  auto mem = GuestMemory::create_anonymous(specs);
  REQUIRE(mem.ok());
  auto all = mem->slice(GuestAddress(0), kRamSize);
  REQUIRE(all.ok());
  std::memset(all->data(), 0xaa, all->size());
  return std::move(mem).value();
}

Bytes guest_bytes(const GuestMemory& mem, uint64_t addr, uint64_t len) {
  Bytes out(len);
  REQUIRE(mem.read(GuestAddress(addr), out).ok());
  return out;
}

LoadedElf load_ok(const GuestMemory& mem, const Bytes& image) {
  auto r = load_elf(mem, image);
  if (!r.ok()) {
    FAIL("load_elf failed: " << r.error().to_string());
  }
  return std::move(r).value();
}

// The error message of a refused image.
std::string refusal(const Bytes& image, ErrorCode code = ErrorCode::kInvalidArgument) {
  auto mem = make_ram();
  auto r = load_elf(mem, image);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == code);
  return r.error().message();
}

Bytes good_image() {
  return ElfBuilder().load(kEntry, pattern(0x100, 1)).build();
}

}  // namespace

TEST_CASE("a good ELF image loads at its physical addresses", "[elf]") {
  auto mem = make_ram();
  const Bytes text = pattern(0x234, 3);
  const Bytes data = pattern(0x80, 0x40);
  auto image =
      ElfBuilder().entry(0x100010).load(0x100000, text).load(0x200000, data, 0x3000).build();

  LoadedElf elf = load_ok(mem, image);
  CHECK(elf.entry == GuestAddress(0x100010));
  CHECK(elf.lowest == GuestAddress(0x100000));
  CHECK(elf.end == GuestAddress(0x203000));
  CHECK_FALSE(elf.petrel_guest_flags.has_value());

  CHECK(guest_bytes(mem, 0x100000, text.size()) == text);
  CHECK(guest_bytes(mem, 0x200000, data.size()) == data);
  // .bss: memsz beyond filesz is zeroed, and nothing past memsz is touched.
  CHECK(guest_bytes(mem, 0x200000 + data.size(), 0x3000 - data.size()) ==
        Bytes(0x3000 - data.size(), std::byte{0}));
  CHECK(guest_bytes(mem, 0x203000, 16) == Bytes(16, std::byte{0xaa}));
  CHECK(guest_bytes(mem, 0x100000 + text.size(), 16) == Bytes(16, std::byte{0xaa}));
  CHECK(guest_bytes(mem, 0xffff0, 16) == Bytes(16, std::byte{0xaa}));
}

TEST_CASE("segments that are not PT_LOAD, or are empty, are not loaded", "[elf]") {
  auto mem = make_ram();
  auto image = ElfBuilder()
                   .load(0x100000, pattern(0x40, 9))
                   .segment(PT_GNU_STACK, 0x300000, pattern(0x10, 1), 0x1000)
                   .load(0x380000, {}, 0)
                   .build();
  LoadedElf elf = load_ok(mem, image);
  CHECK(elf.lowest == GuestAddress(0x100000));
  CHECK(elf.end == GuestAddress(0x100040));
  CHECK(guest_bytes(mem, 0x300000, 16) == Bytes(16, std::byte{0xaa}));
}

TEST_CASE("the petrel guest-kit note is found in a PT_NOTE segment", "[elf]") {
  auto mem = make_ram();
  ElfBuilder b;
  b.load(kEntry, pattern(0x40, 5));

  SECTION("alone") {
    b.notes(petrel_note(PETREL_GUEST_PVM_NATIVE));
    CHECK(load_ok(mem, b.build()).petrel_guest_flags == PETREL_GUEST_PVM_NATIVE);
  }
  SECTION("after notes of other owners and types") {
    Bytes notes = note("GNU", NT_GNU_BUILD_ID, pattern(20, 0));
    Bytes other_type = note(PETREL_NOTE_NAME, PETREL_NOTE_GUEST_KIT + 1, u32_bytes(7));
    notes.insert(notes.end(), other_type.begin(), other_type.end());
    Bytes ours = petrel_note(0x12345678);
    notes.insert(notes.end(), ours.begin(), ours.end());
    b.notes(notes);
    CHECK(load_ok(mem, b.build()).petrel_guest_flags == 0x12345678u);
  }
  SECTION("in a second PT_NOTE segment") {
    b.notes(note("GNU", NT_GNU_BUILD_ID, pattern(20, 0)));
    b.notes(petrel_note(0));
    CHECK(load_ok(mem, b.build()).petrel_guest_flags == 0u);
  }
}

TEST_CASE("notes that are not the petrel note give no flags", "[elf]") {
  auto mem = make_ram();
  ElfBuilder b;
  b.load(kEntry, pattern(0x40, 5));

  SECTION("another name") {
    b.notes(note("petrel2", PETREL_NOTE_GUEST_KIT, u32_bytes(1)));
  }
  SECTION("a name that only starts like ours") {
    b.notes(note("petr", PETREL_NOTE_GUEST_KIT, u32_bytes(1)));
  }
  SECTION("another type") {
    b.notes(note(PETREL_NOTE_NAME, PETREL_NOTE_GUEST_KIT + 1, u32_bytes(1)));
  }
  SECTION("a descriptor shorter than 4 bytes") {
    b.notes(note(PETREL_NOTE_NAME, PETREL_NOTE_GUEST_KIT, Bytes{std::byte{1}, std::byte{0}}));
  }
  CHECK_FALSE(load_ok(mem, b.build()).petrel_guest_flags.has_value());
}

TEST_CASE("malformed notes are skipped without reading past the segment", "[elf]") {
  auto mem = make_ram();
  ElfBuilder b;
  b.load(kEntry, pattern(0x40, 5));
  Bytes notes = petrel_note(PETREL_GUEST_PVM_NATIVE);

  SECTION("a huge name size") {
    Elf64_Nhdr hdr;
    std::memcpy(&hdr, notes.data(), sizeof(hdr));
    hdr.n_namesz = 0xffffffff;
    std::memcpy(notes.data(), &hdr, sizeof(hdr));
  }
  SECTION("a huge descriptor size") {
    Elf64_Nhdr hdr;
    std::memcpy(&hdr, notes.data(), sizeof(hdr));
    hdr.n_descsz = 0xfffffffd;
    std::memcpy(notes.data(), &hdr, sizeof(hdr));
  }
  SECTION("a descriptor cut off by the segment end") {
    notes.resize(notes.size() - 2);
  }
  SECTION("a segment shorter than a note header") {
    notes.resize(sizeof(Elf64_Nhdr) - 1);
  }
  b.notes(notes);
  CHECK_FALSE(load_ok(mem, b.build()).petrel_guest_flags.has_value());
}

TEST_CASE("files that are not 64-bit x86-64 executables are refused", "[elf]") {
  Bytes image = good_image();
  SECTION("bad magic") {
    image[1] = std::byte{'X'};
    CHECK_THAT(refusal(image), Contains("not an ELF file"));
  }
  SECTION("a 3-byte file") {
    image.resize(3);
    CHECK_THAT(refusal(image), Contains("not an ELF file"));
  }
  SECTION("an empty file") {
    CHECK_THAT(refusal(Bytes{}), Contains("not an ELF file"));
  }
  SECTION("32-bit class") {
    patch_ehdr(image, [](Elf64_Ehdr& e) { e.e_ident[EI_CLASS] = ELFCLASS32; });
    CHECK_THAT(refusal(image), Contains("not a 64-bit little-endian x86-64 ELF"));
  }
  SECTION("big-endian") {
    patch_ehdr(image, [](Elf64_Ehdr& e) { e.e_ident[EI_DATA] = ELFDATA2MSB; });
    CHECK_THAT(refusal(image), Contains("not a 64-bit little-endian x86-64 ELF"));
  }
  SECTION("wrong machine") {
    patch_ehdr(image, [](Elf64_Ehdr& e) { e.e_machine = EM_AARCH64; });
    CHECK_THAT(refusal(image), Contains("not a 64-bit little-endian x86-64 ELF"));
  }
  SECTION("ET_DYN") {
    patch_ehdr(image, [](Elf64_Ehdr& e) { e.e_type = ET_DYN; });
    CHECK_THAT(refusal(image), Contains("ELF type 3 is not an executable (ET_EXEC)"));
  }
  SECTION("wrong program header entry size") {
    patch_ehdr(image, [](Elf64_Ehdr& e) { e.e_phentsize = sizeof(Elf64_Phdr) - 8; });
    CHECK_THAT(refusal(image), Contains("no usable program headers"));
  }
  SECTION("no program headers") {
    patch_ehdr(image, [](Elf64_Ehdr& e) { e.e_phnum = 0; });
    CHECK_THAT(refusal(image), Contains("no usable program headers"));
  }
}

TEST_CASE("images whose headers point outside the file are refused", "[elf]") {
  Bytes image = good_image();
  SECTION("no PT_LOAD segment") {
    auto notes_only = ElfBuilder().notes(petrel_note(PETREL_GUEST_PVM_NATIVE)).build();
    CHECK_THAT(refusal(notes_only), Contains("ELF has no loadable segment"));
  }
  SECTION("program header table past the end of the file") {
    const uint64_t size = image.size();
    patch_ehdr(image, [&](Elf64_Ehdr& e) { e.e_phoff = size - sizeof(Elf64_Phdr) / 2; });
    CHECK_THAT(refusal(image), Contains("program header 0 lies past the end of the file"));
  }
  SECTION("program header table offset that wraps") {
    patch_ehdr(image, [](Elf64_Ehdr& e) { e.e_phoff = UINT64_MAX - 8; });
    CHECK_THAT(refusal(image), Contains("program header 0 lies past the end of the file"));
  }
  SECTION("segment offset past the end of the file") {
    const uint64_t size = image.size();
    patch_phdr(image, 0, [&](Elf64_Phdr& p) { p.p_offset = size + 1; });
    CHECK_THAT(refusal(image), Contains("segment 0 lies past the end of the file"));
  }
  SECTION("truncated file: segment file size past the end") {
    image.resize(image.size() - 1);
    CHECK_THAT(refusal(image), Contains("segment 0 lies past the end of the file (truncated"));
  }
  SECTION("segment file size that wraps with its offset") {
    patch_phdr(image, 0, [](Elf64_Phdr& p) { p.p_filesz = p.p_memsz = UINT64_MAX; });
    CHECK_THAT(refusal(image), Contains("segment 0 lies past the end of the file"));
  }
  SECTION("file size larger than memory size") {
    patch_phdr(image, 0, [](Elf64_Phdr& p) { p.p_memsz = p.p_filesz - 1; });
    CHECK_THAT(refusal(image), Contains("segment 0: file size exceeds memory size"));
  }
}

TEST_CASE("segments outside guest RAM are refused", "[elf]") {
  SECTION("below 1 MiB") {
    auto image = ElfBuilder().entry(0xff000).load(0xff000, pattern(0x10, 1)).build();
    CHECK_THAT(refusal(image, ErrorCode::kOutOfRange),
               Contains("segment 0 at 0xff000 is below the 1 MiB kernel minimum"));
  }
  SECTION("crossing the end of RAM") {
    auto image = ElfBuilder().load(kEntry, pattern(0x10, 1)).load(kRamSize - 0x800, {}, 0x1000);
    CHECK_THAT(refusal(image.build(), ErrorCode::kOutOfRange),
               Contains("segment 1 (0x1000 bytes at 0x3ff800) does not fit in guest memory"));
  }
  SECTION("entirely past the end of RAM") {
    auto image = ElfBuilder().entry(kRamSize).load(kRamSize, pattern(0x10, 1)).build();
    CHECK_THAT(refusal(image, ErrorCode::kOutOfRange), Contains("does not fit in guest memory"));
  }
  SECTION("physical address + memory size overflows 2^64") {
    auto image = ElfBuilder().load(kEntry, pattern(0x10, 1), UINT64_MAX - 0xfff).build();
    CHECK_THAT(refusal(image, ErrorCode::kOutOfRange),
               Contains("segment 0 (0xfffffffffffff000 bytes at 0x100000) does not fit"));
  }
  SECTION("a segment at the top of the address space that wraps") {
    const uint64_t top = UINT64_MAX - 0xfff;
    auto image = ElfBuilder().entry(top).load(top, pattern(0x10, 1), 0x2000).build();
    CHECK_THAT(refusal(image, ErrorCode::kOutOfRange), Contains("does not fit in guest memory"));
  }
}

TEST_CASE("an entry point outside every loaded segment is refused", "[elf]") {
  SECTION("past the end of the segment's memory") {
    auto image = ElfBuilder().entry(0x101000).load(kEntry, pattern(0x10, 1), 0x1000).build();
    CHECK_THAT(refusal(image), Contains("entry point 0x101000 is not inside a loaded segment"));
  }
  SECTION("below the segment") {
    auto image = ElfBuilder().entry(0xfffff).load(kEntry, pattern(0x10, 1)).build();
    CHECK_THAT(refusal(image), Contains("entry point 0xfffff is not inside a loaded segment"));
  }
  SECTION("inside a PT_NOTE segment only") {
    auto with_note = ElfBuilder().entry(0x200000).load(kEntry, pattern(0x10, 1));
    with_note.segment(PT_NOTE, 0x200000, petrel_note(0), 0);
    CHECK_THAT(refusal(with_note.build()), Contains("entry point 0x200000 is not inside"));
  }
}

TEST_CASE("the built hello test guest loads with its petrel note", "[elf][guest]") {
  const char* dir = std::getenv("PETREL_GUEST_DIR");
  if (dir == nullptr) {
    FAIL("PETREL_GUEST_DIR is not set (run the unit tests through meson test)");
  }
  const auto path = std::filesystem::path(dir) / "hello.elf";
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes image(chars.size());
  std::memcpy(image.data(), chars.data(), chars.size());
  REQUIRE(image.size() > sizeof(Elf64_Ehdr));

  auto mem = make_ram();
  LoadedElf elf = load_ok(mem, image);
  CHECK(elf.entry == GuestAddress(0x100000));
  CHECK(elf.lowest == GuestAddress(0x100000));
  CHECK(elf.end > elf.lowest);
  CHECK(elf.end <= GuestAddress(kRamSize));
  REQUIRE(elf.petrel_guest_flags.has_value());
  CHECK(*elf.petrel_guest_flags == PETREL_GUEST_PVM_NATIVE);

  // The first PT_LOAD's file bytes are in guest memory at its physical address.
  Elf64_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof(eh));
  for (size_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, image.data() + eh.e_phoff + i * sizeof(ph), sizeof(ph));
    if (ph.p_type == PT_LOAD && ph.p_filesz > 0) {
      Bytes file(image.begin() + ph.p_offset, image.begin() + ph.p_offset + ph.p_filesz);
      CHECK(guest_bytes(mem, ph.p_paddr, ph.p_filesz) == file);
      break;
    }
  }
}

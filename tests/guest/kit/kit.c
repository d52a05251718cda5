/* The kit's core: the PVM note, start-up state, boot info and command line, the bump
 * allocator, interrupt masking, COM1, exit and the string functions. */
#include "kit.h"

/* The guest-kit note (guest_abi.h): petrel may run this guest in PVM native mode. gas
 * gives a section named .note.* the type SHT_NOTE; guest.ld covers it with PT_NOTE. */
struct kit_note {
  uint32_t namesz, descsz, type;
  char name[8]; /* "petrel" NUL-terminated, padded to 4 bytes */
  uint32_t desc;
};
__attribute__((section(".note.petrel"), aligned(4), used)) static const struct kit_note kit_note = {
    sizeof(PETREL_NOTE_NAME), sizeof(uint32_t), PETREL_NOTE_GUEST_KIT, PETREL_NOTE_NAME,
    PETREL_GUEST_PVM_NATIVE};
_Static_assert(sizeof(PETREL_NOTE_NAME) <= 8, "note name must fit kit_note.name");

/* Defined by guest.ld. */
extern char __image_start[], __image_end[];

/* Set by start.S before kit_init(): RSI at entry. */
const struct petrel_boot_info* kit_boot_info_raw;

static const struct petrel_boot_info* boot; /* kit_boot_info_raw if valid, else NULL */
static uint64_t alloc_next, alloc_end;      /* kit_alloc() bump range */
static volatile uint8_t* vif;               /* VIF page in PVM native mode, else NULL */

#define PAGE_SIZE 4096u
#define COM1_THR 0u /* transmit holding (DLAB 0), divisor low (DLAB 1) */
#define COM1_IER 1u /* interrupt enable (DLAB 0), divisor high (DLAB 1) */
#define COM1_LCR 3u
#define COM1_MCR 4u
#define COM1_LSR 5u
#define LSR_THRE 0x20u
#define THRE_POLL_LIMIT 100000u /* then write anyway: a broken UART must not hang us */

static uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

static bool overlaps(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size) {
  return a < b + b_size && b < a + a_size;
}

uint64_t kit_image_start(void) {
  return (uint64_t)(uintptr_t)__image_start;
}
uint64_t kit_image_end(void) {
  return (uint64_t)(uintptr_t)__image_end;
}

/* Called by start.S with .bss cleared and the kit stack set. */
void kit_init(void);
void kit_init(void) {
  const struct petrel_boot_info* bi = kit_boot_info_raw;
  if (bi != NULL && bi->magic == PETREL_BOOT_INFO_MAGIC &&
      bi->version == PETREL_BOOT_INFO_VERSION) {
    boot = bi;
    if ((bi->flags & PETREL_BOOT_INFO_FLAG_PVM_NATIVE) != 0 && bi->vif_page != 0) {
      vif = (volatile uint8_t*)(uintptr_t)bi->vif_page;
    }
    /* The allocator takes the range holding the image end. */
    uint32_t n = bi->nr_mem_ranges;
    if (n > PETREL_BOOT_INFO_MAX_RANGES) {
      n = PETREL_BOOT_INFO_MAX_RANGES;
    }
    for (uint32_t i = 0; i < n; i++) {
      uint64_t start = bi->mem[i].start, end = start + bi->mem[i].size;
      if (start <= kit_image_end() && kit_image_end() < end) {
        alloc_next = kit_image_end();
        alloc_end = end;
      }
    }
  }
  serial_init();
}

const struct petrel_boot_info* kit_boot_info(void) {
  return boot;
}

const char* kit_cmdline(void) {
  if (boot == NULL || boot->cmdline_addr == 0) {
    return "";
  }
  return (const char*)(uintptr_t)boot->cmdline_addr;
}

bool kit_cmdline_find(const char* key, const char** value) {
  size_t key_len = kit_strlen(key);
  const char* p = kit_cmdline();
  while (*p != '\0') {
    while (*p == ' ') {
      p++;
    }
    if (memcmp(p, key, key_len) == 0 && p[key_len] == '=') {
      *value = p + key_len + 1;
      return true;
    }
    while (*p != '\0' && *p != ' ') {
      p++;
    }
  }
  return false;
}

bool kit_cmdline_u64(const char* key, uint64_t* out) {
  const char* p;
  if (!kit_cmdline_find(key, &p)) {
    return false;
  }
  unsigned base = 10;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p += 2;
  }
  uint64_t v = 0;
  int digits = 0;
  for (; *p != '\0' && *p != ' '; p++, digits++) {
    unsigned d;
    if (*p >= '0' && *p <= '9') {
      d = (unsigned)(*p - '0');
    } else if (base == 16 && *p >= 'a' && *p <= 'f') {
      d = (unsigned)(*p - 'a' + 10);
    } else if (base == 16 && *p >= 'A' && *p <= 'F') {
      d = (unsigned)(*p - 'A' + 10);
    } else {
      return false;
    }
    v = v * base + d;
  }
  if (digits == 0) {
    return false;
  }
  *out = v;
  return true;
}

/* Areas the guest must not clobber; returns how many were stored in r. */
struct region {
  uint64_t start, size;
};
static int reserved_regions(struct region r[4]) {
  int n = 0;
  r[n++] = (struct region){kit_image_start(), kit_image_end() - kit_image_start()};
  const struct petrel_boot_info* bi = kit_boot_info_raw;
  if (bi != NULL) {
    r[n++] = (struct region){(uint64_t)(uintptr_t)bi, sizeof(*bi)};
  }
  if (boot != NULL && boot->cmdline_addr != 0) {
    r[n++] = (struct region){boot->cmdline_addr, (uint64_t)boot->cmdline_len + 1u};
  }
  if (boot != NULL && boot->vif_page != 0) {
    r[n++] = (struct region){boot->vif_page, PAGE_SIZE};
  }
  return n;
}

bool kit_overlaps_reserved(uint64_t addr, uint64_t size) {
  struct region r[4];
  int n = reserved_regions(r);
  for (int i = 0; i < n; i++) {
    if (overlaps(addr, size, r[i].start, r[i].size)) {
      return true;
    }
  }
  return false;
}

void* kit_alloc(size_t size, size_t align) {
  if (align == 0) {
    align = 1;
  }
  struct region r[4];
  int n = reserved_regions(r);
  uint64_t p = align_up(alloc_next, align);
  /* Step over reserved areas; p only grows, so this ends. */
  for (bool moved = true; moved;) {
    if (p > alloc_end || size > alloc_end - p) {
      return NULL;
    }
    moved = false;
    for (int i = 0; i < n; i++) {
      if (overlaps(p, size, r[i].start, r[i].size)) {
        p = align_up(r[i].start + r[i].size, align);
        moved = true;
      }
    }
  }
  alloc_next = p + size;
  return (void*)(uintptr_t)p;
}

void kit_irq_disable(void) {
  if (vif != NULL) {
    vif[0] = 0;
    __asm__ volatile("" : : : "memory");
  } else {
    __asm__ volatile("cli" : : : "memory");
  }
}

void kit_irq_enable(void) {
  if (vif != NULL) {
    __asm__ volatile("" : : : "memory");
    vif[0] = 1;
    if (vif[1] != 0) {
      outb(0x80, 0); /* a trapping instruction lets the pending interrupt in */
    }
  } else {
    __asm__ volatile("sti" : : : "memory");
  }
}

uint64_t kit_read_cr2(void) {
  uint64_t cr2;
  __asm__ volatile("movq %%cr2, %0" : "=r"(cr2));
  return cr2;
}

void serial_init(void) {
  outb(PETREL_PORT_COM1 + COM1_IER, 0x00); /* no interrupts */
  outb(PETREL_PORT_COM1 + COM1_LCR, 0x80); /* DLAB */
  outb(PETREL_PORT_COM1 + COM1_THR, 0x01); /* divisor 1: 115200 baud */
  outb(PETREL_PORT_COM1 + COM1_IER, 0x00);
  outb(PETREL_PORT_COM1 + COM1_LCR, 0x03); /* 8N1, DLAB off */
  /* FCR is not written: enabling or clearing the FIFOs empties the receiver, which would
   * drop input the host queued before the guest got here (petrel feeds its stdin to COM1
   * from the start). The UART stays in 16450 mode, as after reset. */
  outb(PETREL_PORT_COM1 + COM1_MCR, 0x03); /* DTR RTS, OUT2 off: no IRQ */
}

void serial_putc(char c) {
  for (unsigned i = 0; i < THRE_POLL_LIMIT; i++) {
    if ((inb(PETREL_PORT_COM1 + COM1_LSR) & LSR_THRE) != 0) {
      break;
    }
  }
  outb(PETREL_PORT_COM1 + COM1_THR, (uint8_t)c);
}

void serial_write(const char* s) {
  while (*s != '\0') {
    serial_putc(*s++);
  }
}

void exit_guest(uint8_t status) {
  outb(PETREL_PORT_EXIT, status);
  for (;;) {
    kit_hlt();
  }
}

/* rep stosb/movsb: gcc cannot turn these back into calls to themselves. */
void* memset(void* dst, int c, size_t n) {
  void* d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

void* memcpy(void* restrict dst, const void* restrict src, size_t n) {
  void* d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
  const unsigned char* x = a;
  const unsigned char* y = b;
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) {
      return x[i] < y[i] ? -1 : 1;
    }
  }
  return 0;
}

size_t kit_strlen(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') {
    n++;
  }
  return n;
}

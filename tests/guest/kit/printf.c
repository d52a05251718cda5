/* kit_printf: a printf subset written straight to COM1 (see kit.h for the conversions). */
#include "kit.h"

/* Prints v in base (10 or 16) at least width digits wide, padded with pad. */
static void put_unsigned(uint64_t v, unsigned base, bool upper, int width, char pad) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char buf[24];
  int n = 0;
  do {
    buf[n++] = digits[v % base];
    v /= base;
  } while (v != 0);
  for (; width > n; width--) {
    serial_putc(pad);
  }
  while (n > 0) {
    serial_putc(buf[--n]);
  }
}

void kit_vprintf(const char* fmt, va_list ap) {
  for (; *fmt != '\0'; fmt++) {
    if (*fmt != '%') {
      serial_putc(*fmt);
      continue;
    }
    fmt++;
    char pad = ' ';
    if (*fmt == '0') {
      pad = '0';
      fmt++;
    }
    int width = 0;
    for (; *fmt >= '0' && *fmt <= '9'; fmt++) {
      width = width * 10 + (*fmt - '0');
    }
    int longs = 0; /* 0: int, 1: long or size_t, 2: long long */
    for (; *fmt == 'l' || *fmt == 'z'; fmt++) {
      longs++;
    }
    switch (*fmt) {
      case 'd':
      case 'i': {
        int64_t v = longs == 0   ? va_arg(ap, int)
                    : longs == 1 ? va_arg(ap, long)
                                 : va_arg(ap, long long);
        uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
        if (v < 0) {
          serial_putc('-');
          width--;
        }
        put_unsigned(mag, 10, false, width, pad);
        break;
      }
      case 'u':
      case 'x':
      case 'X': {
        uint64_t v = longs == 0   ? va_arg(ap, unsigned)
                     : longs == 1 ? va_arg(ap, unsigned long)
                                  : va_arg(ap, unsigned long long);
        put_unsigned(v, *fmt == 'u' ? 10 : 16, *fmt == 'X', width, pad);
        break;
      }
      case 'p':
        serial_write("0x");
        put_unsigned((uint64_t)(uintptr_t)va_arg(ap, void*), 16, false, width, pad);
        break;
      case 'c':
        serial_putc((char)va_arg(ap, int));
        break;
      case 's': {
        const char* s = va_arg(ap, const char*);
        serial_write(s != NULL ? s : "(null)");
        break;
      }
      case '%':
        serial_putc('%');
        break;
      case '\0':
        return;
      default: /* unknown: print it as is */
        serial_putc('%');
        serial_putc(*fmt);
        break;
    }
  }
}

void kit_printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_vprintf(fmt, ap);
  va_end(ap);
}

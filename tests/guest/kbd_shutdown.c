/* kbd_shutdown: waits for Ctrl-Alt-Del on the i8042 keyboard, then resets the machine.
 *
 * Sets the i8042 command byte to 0x44 (system flag, XLATE: scancode set 1 as Linux reads
 * it; keyboard interrupt off, since it polls), prints "waiting for ctrl-alt-del\n", then
 * polls the status port (0x64) and reads every byte of the data port (0x60) while the
 * output buffer is full, tracking Ctrl (1d/9d) and Alt (38/b8) and the E0 prefix. When
 * Delete (E0 53) is pressed with Ctrl and Alt held it prints "ctrl-alt-del received\n" and
 * pulses the reset line (0xfe to port 0x64). If the write returns and the guest keeps
 * running, exits 0x22. Other key codes are ignored. It waits forever: whoever runs it must
 * type Ctrl-Alt-Del (petrel's graceful shutdown). */
#include "kit/kit.h"

#define I8042_DATA PETREL_PORT_I8042_DATA
#define I8042_STATUS PETREL_PORT_I8042_CMD
#define I8042_CMD PETREL_PORT_I8042_CMD
#define STATUS_OUTPUT_FULL 0x01u
#define CMD_WRITE_CTR 0x60u
#define CTR_SYS_XLATE 0x44u
#define CMD_RESET 0xfeu

#define SET1_CTRL 0x1du
#define SET1_ALT 0x38u
#define SET1_DELETE 0x53u /* after E0 */
#define SET1_BREAK 0x80u
#define SET1_E0 0xe0u

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  outb(I8042_CMD, CMD_WRITE_CTR);
  outb(I8042_DATA, CTR_SYS_XLATE);
  kit_printf("waiting for ctrl-alt-del\n");
  bool ctrl = false, alt = false, e0 = false;
  for (;;) {
    if ((inb(I8042_STATUS) & STATUS_OUTPUT_FULL) == 0) {
      __asm__ volatile("pause");
      continue;
    }
    uint8_t code = inb(I8042_DATA);
    if (code == SET1_E0) {
      e0 = true;
      continue;
    }
    bool make = (code & SET1_BREAK) == 0;
    uint8_t key = code & (uint8_t)~SET1_BREAK;
    if (key == SET1_CTRL) {
      ctrl = make; /* Left Ctrl, or Right Ctrl (E0 1d) */
    } else if (key == SET1_ALT) {
      alt = make;
    } else if (e0 && key == SET1_DELETE && make && ctrl && alt) {
      break;
    }
    e0 = false;
  }
  kit_printf("ctrl-alt-del received\n");
  outb(I8042_CMD, CMD_RESET);
  exit_guest(0x22);
}

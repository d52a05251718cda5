// InterruptLine: a level-triggered interrupt input of the machine (an ISA IRQ on the
// in-kernel PIC/IOAPIC). set_level may be called from any thread.
#pragma once

namespace petrel {

class InterruptLine {
 public:
  virtual ~InterruptLine() = default;
  virtual void set_level(bool asserted) = 0;
};

}  // namespace petrel

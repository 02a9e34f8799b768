// The HVAC relay (a heater, or a cooler in cool mode) and the light relay.
// Both start off at power-up.
#pragma once

#include "bellhop/room_controller.hpp"

class Relays {
 public:
  // Drives the pins to "off" before making them outputs: no click at boot.
  void begin();
  void apply(const bellhop::Outbox& out);
};

#include "relays.h"

#include <Arduino.h>

#include "board.h"

namespace {

void drive(int pin, bool on) { digitalWrite(pin, on ? board::kRelayOnLevel : !board::kRelayOnLevel); }

}  // namespace

void Relays::begin() {
  for (int pin : {board::kHvacRelayPin, board::kLightRelayPin}) {
    drive(pin, false);
    pinMode(pin, OUTPUT);
  }
}

void Relays::apply(const bellhop::Outbox& out) {
  if (out.hvac_relay) drive(board::kHvacRelayPin, *out.hvac_relay);
  if (out.light_relay) drive(board::kLightRelayPin, *out.light_relay);
}

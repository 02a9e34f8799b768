// The room's sensors, read into the core's Readings. A sensor that is
// missing or fails gives no value (never a made-up one).
#pragma once

#include <Adafruit_SHT31.h>
#include <BH1750.h>

#include <optional>

#include "bellhop/room_controller.hpp"
#include "bellhop/sensor_conversion.hpp"

class Sensors {
 public:
  void begin();
  bellhop::Readings read();
  // A debounced change of the door contact or the button, at `now_ms`.
  std::optional<bool> door_change(uint64_t now_ms);
  bool button_pressed(uint64_t now_ms);
  bool door_open() const { return door_.stable(); }

 private:
  Adafruit_SHT31 sht31_;
  BH1750 light_;
  bool sht31_ok_ = false;
  bool light_ok_ = false;
  bellhop::Debouncer door_{0, false};
  bellhop::Debouncer button_{0, false};
};

// Raw ADC readings to physical values, and switch debouncing (no I/O).
//
// Kept out of the Arduino glue so the arithmetic, and its handling of
// broken wiring, is tested on the host.
#pragma once

#include <cstdint>
#include <optional>

namespace bellhop {

// NTC thermistor in a divider: supply - series resistor - ADC - NTC - ground.
struct NtcDivider {
  double series_ohms = 10000;
  double nominal_ohms = 10000;   // the NTC's resistance at nominal_celsius
  double nominal_celsius = 25;
  double beta = 3950;
};

// Temperature from the Beta equation; nothing for an open or shorted
// thermistor (a reading at either rail), so a broken probe is never
// mistaken for an arctic or a burning room.
std::optional<double> ntc_celsius(std::uint32_t raw, std::uint32_t full_scale, const NtcDivider& divider);

// An MQ-2 style gas sensor: its resistance Rs over a load resistor, the
// reading scaled so that full_scale is the sensor's supply. ppm = a * (Rs/R0)^b,
// with a and b from the datasheet curve of the gas of interest and R0 the
// resistance measured in clean air at calibration.
struct GasCurve {
  double load_ohms = 10000;
  double clean_air_ohms = 9830;  // R0
  double a = 574.25;             // LPG on the MQ-2 datasheet curve
  double b = -2.222;
};

std::optional<double> gas_ppm(std::uint32_t raw, std::uint32_t full_scale, const GasCurve& curve);

// A switch input (reed contact, push button) that must hold a level for
// settle_ms before it counts: contact bounce makes no events.
class Debouncer {
 public:
  Debouncer(std::uint32_t settle_ms, bool initial) : settle_ms_(settle_ms), stable_(initial), seen_(initial) {}

  // The new stable level when it changed at `now_ms`, else nothing.
  std::optional<bool> update(bool level, std::uint64_t now_ms);
  bool stable() const { return stable_; }

 private:
  std::uint32_t settle_ms_;
  bool stable_;
  bool seen_;
  std::uint64_t seen_since_ms_ = 0;
};

}  // namespace bellhop

#include "bellhop/sensor_conversion.hpp"

#include <cmath>

namespace bellhop {

std::optional<double> ntc_celsius(std::uint32_t raw, std::uint32_t full_scale, const NtcDivider& d) {
  if (raw == 0 || raw >= full_scale) return std::nullopt;
  const double ohms = d.series_ohms * static_cast<double>(raw) / static_cast<double>(full_scale - raw);
  const double inverse_kelvin = 1.0 / (d.nominal_celsius + 273.15) + std::log(ohms / d.nominal_ohms) / d.beta;
  const double celsius = 1.0 / inverse_kelvin - 273.15;
  // Beyond any NTC's rating: a wiring fault, not a temperature.
  if (!std::isfinite(celsius) || celsius < -40 || celsius > 125) return std::nullopt;
  return celsius;
}

std::optional<double> gas_ppm(std::uint32_t raw, std::uint32_t full_scale, const GasCurve& c) {
  if (raw == 0 || raw > full_scale) return std::nullopt;  // no output: unpowered or disconnected
  const double rs = c.load_ohms * static_cast<double>(full_scale - raw) / static_cast<double>(raw);
  const double ppm = c.a * std::pow(rs / c.clean_air_ohms, c.b);
  if (!std::isfinite(ppm)) return 100000.0;  // Rs of 0: as much gas as the sensor can tell
  return ppm < 0 ? 0.0 : (ppm > 100000 ? 100000.0 : ppm);
}

std::optional<bool> Debouncer::update(bool level, std::uint64_t now_ms) {
  if (level != seen_) {
    seen_ = level;
    seen_since_ms_ = now_ms;
  }
  if (seen_ != stable_ && now_ms - seen_since_ms_ >= settle_ms_) {
    stable_ = seen_;
    return stable_;
  }
  return std::nullopt;
}

}  // namespace bellhop

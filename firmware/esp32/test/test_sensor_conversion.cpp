#include <doctest/doctest.h>

#include "bellhop/sensor_conversion.hpp"

namespace bellhop {

TEST_CASE("an NTC at its nominal resistance reads its nominal temperature") {
  // Equal series and NTC resistance: the divider sits at half scale.
  const std::optional<double> t = ntc_celsius(2048, 4096, {});
  REQUIRE(t);
  CHECK(*t == doctest::Approx(25.0).epsilon(0.001));
}

TEST_CASE("a warmer NTC (lower resistance, lower reading) reads warmer") {
  const std::optional<double> warm = ntc_celsius(1000, 4096, {});
  const std::optional<double> cold = ntc_celsius(3000, 4096, {});
  REQUIRE(warm);
  REQUIRE(cold);
  CHECK(*warm > 25.0);
  CHECK(*cold < 25.0);
  // 10k NTC, beta 3950, at about 5.0 kOhm is about 41.5 degC.
  CHECK(*ntc_celsius(1365, 4096, {}) == doctest::Approx(41.5).epsilon(0.01));
}

TEST_CASE("an open or shorted thermistor gives no temperature at all") {
  CHECK_FALSE(ntc_celsius(0, 4096, {}));
  CHECK_FALSE(ntc_celsius(4096, 4096, {}));
  CHECK_FALSE(ntc_celsius(4095, 4096, {}));  // nearly open: far below -40 degC
  CHECK_FALSE(ntc_celsius(1, 4096, {}));     // nearly shorted: far above 125 degC
}

TEST_CASE("gas: clean air reads low, more gas reads more, nothing reads nothing") {
  GasCurve curve;
  // Rs == R0 (clean air) gives the curve's a.
  const auto clean_raw = static_cast<std::uint32_t>(4096.0 * curve.load_ohms / (curve.load_ohms + curve.clean_air_ohms));
  const std::optional<double> clean = gas_ppm(clean_raw, 4096, curve);
  REQUIRE(clean);
  CHECK(*clean == doctest::Approx(curve.a).epsilon(0.01));
  CHECK(*gas_ppm(3500, 4096, curve) > *clean);
  CHECK_FALSE(gas_ppm(0, 4096, curve));
  CHECK(*gas_ppm(4096, 4096, curve) == 100000.0);  // the sensor's ceiling, never infinity
}

TEST_CASE("a bouncing contact makes one change, after it settles") {
  Debouncer door(50, false);
  CHECK_FALSE(door.update(true, 0));
  CHECK_FALSE(door.update(false, 10));  // bounce
  CHECK_FALSE(door.update(true, 20));
  CHECK_FALSE(door.update(true, 69));
  const std::optional<bool> opened = door.update(true, 70);
  REQUIRE(opened);
  CHECK(*opened);
  CHECK_FALSE(door.update(true, 500));  // no repeat
  CHECK_FALSE(door.update(false, 600));
  CHECK(door.update(false, 650).value_or(true) == false);
}

}  // namespace bellhop

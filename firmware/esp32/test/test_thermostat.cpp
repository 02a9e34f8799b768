#include <doctest/doctest.h>

#include "bellhop/thermostat.hpp"

namespace bellhop {
namespace {

constexpr std::uint64_t kMinute = 60 * 1000;

// Feeds a reading and returns the relay state right after it.
bool feed(Thermostat& t, double celsius, std::uint64_t now_ms) {
  t.on_reading(celsius, now_ms);
  return t.update(now_ms, std::nullopt);
}

}  // namespace

TEST_CASE("heating switches on below the band and off above it, and holds inside it") {
  Thermostat t({21.0, ThermostatMode::kHeat, {}}, {0.5, 2 * kMinute, 5, 35});
  CHECK(feed(t, 20.5, 0));      // below 20.75: heat
  CHECK(feed(t, 20.9, 1000));   // inside the band: keep heating
  CHECK(feed(t, 21.2, 2000));   // still inside: keep heating
  CHECK_FALSE(feed(t, 21.3, 3000));  // above 21.25: stop
  CHECK_FALSE(feed(t, 21.0, 4000));  // inside the band: stay off
  CHECK_FALSE(feed(t, 20.8, 5000));
  CHECK(feed(t, 20.7, 6000));   // below again
}

TEST_CASE("cooling mirrors heating") {
  Thermostat t({24.0, ThermostatMode::kCool, {}});
  CHECK(feed(t, 24.5, 0));
  CHECK(feed(t, 24.0, 1000));
  CHECK_FALSE(feed(t, 23.7, 2000));
  CHECK_FALSE(feed(t, 24.2, 3000));
}

TEST_CASE("mode off keeps the relay off whatever the temperature") {
  Thermostat t({21.0, ThermostatMode::kHeat, {}});
  CHECK(feed(t, 15.0, 0));
  t.set_mode(ThermostatMode::kOff);
  CHECK_FALSE(feed(t, 10.0, 1000));
}

TEST_CASE("without commands the last setpoint keeps being regulated, for hours") {
  // The gateway is unreachable: no command arrives, control goes on.
  Thermostat t;
  REQUIRE(t.set_setpoint(23.0));
  bool relay = false;
  for (std::uint64_t now = 0; now < 6 * 60 * kMinute; now += kMinute) {
    const double room = relay ? 23.3 : 22.6;
    relay = feed(t, room, now);
    CHECK(t.target() == 23.0);
    CHECK(t.fault() == ThermostatFault::kNone);
  }
}

TEST_CASE("settings restored after a reboot are used as they were") {
  Thermostat before;
  REQUIRE(before.set_setpoint(19.5));
  before.set_mode(ThermostatMode::kCool);
  Thermostat after(before.settings());
  CHECK(after.settings().setpoint == 19.5);
  CHECK(after.settings().mode == ThermostatMode::kCool);
}

TEST_CASE("a corrupt saved setpoint falls back to the safe default") {
  Thermostat t({99.0, ThermostatMode::kHeat, {}});
  CHECK(t.settings().setpoint == 21.0);
  Thermostat u({-1.0 / 0.0, ThermostatMode::kHeat, {}});
  CHECK(u.settings().setpoint == 21.0);
}

TEST_CASE("setpoints outside 5..35 are refused and the old one kept") {
  Thermostat t;
  CHECK(t.set_setpoint(22.0));
  CHECK_FALSE(t.set_setpoint(4.9));
  CHECK_FALSE(t.set_setpoint(35.1));
  CHECK_FALSE(t.set_setpoint(0.0 / 0.0));
  CHECK(t.settings().setpoint == 22.0);
}

TEST_CASE("a stale or missing reading switches the relay off") {
  Thermostat t({21.0, ThermostatMode::kHeat, {}}, {0.5, 2 * kMinute, 5, 35});
  CHECK_FALSE(t.update(0, std::nullopt));  // no reading yet
  CHECK(t.fault() == ThermostatFault::kNoReading);
  CHECK(feed(t, 18.0, 10 * kMinute));
  CHECK(t.update(12 * kMinute, std::nullopt));  // still fresh
  CHECK_FALSE(t.update(12 * kMinute + 1, std::nullopt));  // sensor went quiet
  CHECK(t.fault() == ThermostatFault::kNoReading);
  CHECK(feed(t, 18.0, 13 * kMinute));  // it recovers by itself
  CHECK(t.fault() == ThermostatFault::kNone);
}

TEST_CASE("an impossible reading is ignored, not regulated to") {
  Thermostat t({21.0, ThermostatMode::kHeat, {}});
  CHECK(feed(t, 18.0, 0));
  t.on_reading(-127.0, 1000);  // a disconnected probe
  CHECK(t.update(1000, std::nullopt));
  t.on_reading(0.0 / 0.0, 2000);
  CHECK(t.update(2000, std::nullopt));
}

TEST_CASE("the setback window lowers the target only while the clock is in it") {
  Thermostat t({21.0, ThermostatMode::kHeat, {22 * 60, 6 * 60, 17.0}});
  t.on_reading(19.0, 0);
  CHECK_FALSE(t.update(0, std::uint16_t{23 * 60}));  // 23:00 is in the window (wraps midnight)
  CHECK(t.target() == 17.0);
  CHECK(t.update(0, std::uint16_t{12 * 60}));  // noon: comfort
  CHECK(t.target() == 21.0);
  CHECK(t.relay_on());
  t.update(0, std::uint16_t{5 * 60 + 59});
  CHECK(t.target() == 17.0);
  t.update(0, std::nullopt);  // clock unknown: comfort, never the setback
  CHECK(t.target() == 21.0);
}

TEST_CASE("an invalid setback is refused") {
  Thermostat t;
  CHECK_FALSE(t.set_setback({24 * 60, 0, 17.0}));
  CHECK_FALSE(t.set_setback({0, 60, 2.0}));
  CHECK(t.set_setback({60, 120, 16.0}));
  CHECK(t.settings().setback.start_minute == 60);
}

}  // namespace bellhop

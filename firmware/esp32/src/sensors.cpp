#include "sensors.h"

#include <Wire.h>

#include <cmath>

#include "board.h"

void Sensors::begin() {
  Wire.begin(board::kI2cSda, board::kI2cScl);
  sht31_ok_ = sht31_.begin(board::kSht31Address);
  light_ok_ = light_.begin(BH1750::CONTINUOUS_HIGH_RES_MODE);
  if (!sht31_ok_) Serial.println("sensors: no SHT31, control falls back to the thermistor");
  if (!light_ok_) Serial.println("sensors: no BH1750, no luminosity");
  analogReadResolution(12);
  analogSetPinAttenuation(board::kThermistorPin, ADC_11db);
  analogSetPinAttenuation(board::kGasPin, ADC_11db);
  pinMode(board::kDoorPin, INPUT_PULLUP);
  pinMode(board::kButtonPin, INPUT_PULLUP);
  // Start from the door's real position: a reboot must not report a change.
  door_ = bellhop::Debouncer(board::kDebounceMs, digitalRead(board::kDoorPin) == HIGH);
  button_ = bellhop::Debouncer(board::kDebounceMs, false);
}

bellhop::Readings Sensors::read() {
  bellhop::Readings r;
  if (sht31_ok_) {
    const float t = sht31_.readTemperature();
    const float h = sht31_.readHumidity();
    if (!std::isnan(t)) r.temperature = t;
    if (!std::isnan(h)) r.humidity = h;
  }
  if (light_ok_) {
    const float lux = light_.readLightLevel();
    if (lux >= 0) r.luminosity = lux;
  }
  const auto ntc = static_cast<uint32_t>(analogRead(board::kThermistorPin));
  r.probe_temperature = bellhop::ntc_celsius(ntc, board::kAdcFullScale, board::kThermistor);
  const auto gas = static_cast<uint32_t>(analogRead(board::kGasPin));
  r.gas_ppm = bellhop::gas_ppm(gas, board::kAdcFullScale, board::kGasCurve);
  return r;
}

std::optional<bool> Sensors::door_change(uint64_t now_ms) {
  return door_.update(digitalRead(board::kDoorPin) == HIGH, now_ms);
}

bool Sensors::button_pressed(uint64_t now_ms) {
  const std::optional<bool> change = button_.update(digitalRead(board::kButtonPin) == LOW, now_ms);
  return change.value_or(false);
}

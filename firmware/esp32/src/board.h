// The room controller board: pins and parts (ESP32 DevKit, esp32dev).
// docs/firmware.md has the wiring table; change both together.
#pragma once

#include <Arduino.h>

#include "bellhop/room_controller.hpp"
#include "bellhop/sensor_conversion.hpp"

namespace board {

// I2C: SHT31 temperature/humidity (0x44) and BH1750 light sensor (0x23).
constexpr int kI2cSda = 21;
constexpr int kI2cScl = 22;
constexpr uint8_t kSht31Address = 0x44;

// ADC1 only: ADC2 cannot be read while Wi-Fi is on.
constexpr int kThermistorPin = 34;  // NTC divider
constexpr int kGasPin = 35;         // MQ-2 analog output through a 5 V -> 3.3 V divider
constexpr uint32_t kAdcFullScale = 4096;

constexpr int kDoorPin = 27;    // reed switch to GND, internal pull-up: HIGH = open
constexpr int kButtonPin = 26;  // wall push button to GND, internal pull-up: LOW = pressed
constexpr uint32_t kDebounceMs = 50;

constexpr int kHvacRelayPin = 25;  // drives the heater (mode heat) or the cooler (mode cool)
constexpr int kLightRelayPin = 33;
// Most relay modules sold for the ESP32 switch on a LOW input.
constexpr int kRelayOnLevel = LOW;

constexpr int kStatusLedPin = 2;

// Optional parts; a board without one reports nothing for it (and refuses
// set_light without the light relay).
constexpr bellhop::Fitted kFitted{/*light_relay=*/true, /*door=*/true, /*gas=*/true};

constexpr bellhop::NtcDivider kThermistor{10000, 10000, 25, 3950};
constexpr bellhop::GasCurve kGasCurve{10000, 9830, 574.25, -2.222};

constexpr uint32_t kSensorPeriodMs = 2000;
// Longer than the worst bounded wait of one loop turn (TCP connect, TLS
// handshake 10 s, CONNACK and SUBACKs 5 s each): only a real hang trips it.
constexpr uint32_t kLoopStallSeconds = 60;

}  // namespace board

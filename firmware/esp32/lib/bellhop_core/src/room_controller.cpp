#include "bellhop/room_controller.hpp"

#include <cstdio>

namespace bellhop {

std::string_view wire_name(GasLevel level) {
  switch (level) {
    case GasLevel::kClear: return "clear";
    case GasLevel::kWarning: return "warning";
    case GasLevel::kAlarm: return "alarm";
  }
  return "clear";
}

// ------------------------------------------------------------------ outbox

void Outbox::clear() {
  count_ = 0;
  used_ = 0;
  hvac_relay.reset();
  light_relay.reset();
  save_settings = false;
}

bool Outbox::add_raw(Channel channel, std::uint8_t qos, bool retained, std::string_view payload) {
  if (count_ == kMaxPublications || payload.size() > bytes_.size() - used_) {
    ++dropped_;
    return false;
  }
  payload.copy(bytes_.data() + used_, payload.size());
  publications_[count_++] = Publication{channel, qos, retained, {bytes_.data() + used_, payload.size()}, 0};
  used_ += payload.size();
  return true;
}

template <typename Message>
bool Outbox::add(Channel channel, std::uint8_t qos, bool retained, const Message& msg, std::uint32_t event_id) {
  const std::size_t n = count_ == kMaxPublications ? 0 : encode(msg, bytes_.data() + used_, bytes_.size() - used_);
  if (n == 0) {
    ++dropped_;
    return false;
  }
  publications_[count_++] = Publication{channel, qos, retained, {bytes_.data() + used_, n}, event_id};
  used_ += n;
  return true;
}

template bool Outbox::add(Channel, std::uint8_t, bool, const Telemetry&, std::uint32_t);
template bool Outbox::add(Channel, std::uint8_t, bool, const StateReport&, std::uint32_t);
template bool Outbox::add(Channel, std::uint8_t, bool, const Event&, std::uint32_t);
template bool Outbox::add(Channel, std::uint8_t, bool, const Status&, std::uint32_t);
template bool Outbox::add(Channel, std::uint8_t, bool, const Ack&, std::uint32_t);

// --------------------------------------------------------------- controller

RoomController::RoomController(const DeviceIdentity& identity, const ThermostatSettings& saved,
                               const ControllerConfig& config)
    : identity_(identity), config_(config), thermostat_(saved, config.thermostat) {
  valid_ = valid_id(identity.hotel_id) && valid_id(identity.device_id) && valid_firmware(identity.firmware);
  if (!valid_) return;
  for (Channel c : {Channel::kTelemetry, Channel::kState, Channel::kEvent, Channel::kCmd, Channel::kAck,
                    Channel::kStatus}) {
    build_topic(identity.hotel_id, identity.device_id, c, topics_[static_cast<std::size_t>(c)]);
  }
  build_broadcast_topic(identity.hotel_id, broadcast_);
}

void RoomController::on_connected(const Now& now, Outbox& out) {
  if (!valid_) return;
  connected_ = true;
  Status birth;
  birth.online = true;
  birth.ts = now.unix_ms;
  birth.kind = identity_.kind;
  birth.firmware = identity_.firmware;
  out.add(Channel::kStatus, 1, true, birth);
  publish_state(now, out);
  flush_events(now, out);
}

void RoomController::on_shutdown(const Now& now, Outbox& out) {
  if (!valid_ || !connected_) return;
  Status goodbye;
  goodbye.online = false;
  goodbye.ts = now.unix_ms;
  out.add(Channel::kStatus, 1, true, goodbye);
}

void RoomController::on_message(std::string_view topic, std::string_view payload, const Now& now,
                                Outbox& out) {
  if (!valid_) return;
  if (topic != topics_[static_cast<std::size_t>(Channel::kCmd)].view() && topic != broadcast_.view()) {
    ++counters_.foreign_topic;
    return;
  }
  const Reject reason = decoder_.decode_command(payload, command_);
  if (reason != Reject::kNone) {
    // Without a trustworthy id there is nothing to acknowledge: count and drop.
    counters_.rejected.count(reason);
    return;
  }
  if (now.unix_ms == 0) {
    // Expiry cannot be judged without the time; the edge retries the same id.
    ++counters_.clock_unset;
    return;
  }
  const GuardDecision decision = guard_.check(command_, now.unix_ms);
  if (decision.verdict != Verdict::kExecute) {
    ++(decision.verdict == Verdict::kDuplicate ? counters_.duplicates : counters_.expired);
    if (!decision.ack.empty()) out.add_raw(Channel::kAck, 1, false, decision.ack);
    return;
  }
  const bool state_changed = execute(now, out);
  ++counters_.executed;
  const std::size_t n = encode(ack_, ack_bytes_.data(), ack_bytes_.size());
  const std::string_view ack_payload(ack_bytes_.data(), n);
  guard_.record(command_.id, ack_payload);
  if (n != 0) out.add_raw(Channel::kAck, 1, false, ack_payload);
  if (state_changed) {
    out.save_settings = true;
    publish_state(now, out);
  }
}

bool RoomController::execute(const Now& now, Outbox& out) {
  const Command& cmd = command_;
  ack_.id = cmd.id;
  ack_.status = AckStatus::kError;
  ack_.result.reset();
  ack_.error.reset();
  auto fail = [&](const char* code, std::string_view detail) {
    std::snprintf(error_, sizeof error_, "%s: %.*s", code, static_cast<int>(detail.size()), detail.data());
    ack_.error = std::string_view(error_);
    ack_.result.reset();
    return false;
  };
  auto number = [&](std::string_view name) -> std::optional<double> {
    const Value* v = cmd.params.find(name);
    if (v == nullptr || v->type != Value::Type::kNumber) return std::nullopt;
    return v->number;
  };
  auto minute = [&](std::string_view name) -> std::optional<std::uint16_t> {
    const std::optional<double> v = number(name);
    if (!v || *v < 0 || *v >= 24 * 60 || *v != static_cast<double>(static_cast<int>(*v))) return std::nullopt;
    return static_cast<std::uint16_t>(*v);
  };

  Entries& result = ack_.result.emplace();
  bool state_changed = false;
  if (cmd.name == "ping") {
    result.add("uptime_s", Value::of(static_cast<double>(now.mono_ms / 1000)));
  } else if (cmd.name == "set_setpoint") {
    const std::optional<double> setpoint = number("setpoint");
    if (!setpoint || !thermostat_.set_setpoint(*setpoint)) {
      return fail("bad_params", "setpoint must be a number in 5..35");
    }
    result.add("setpoint", Value::of(*setpoint));
    state_changed = true;
  } else if (cmd.name == "set_mode") {
    const Value* mode = cmd.params.find("mode");
    const std::optional<ThermostatMode> parsed =
        mode != nullptr && mode->type == Value::Type::kText ? thermostat_mode_from(mode->text) : std::nullopt;
    if (!parsed) return fail("bad_params", "mode must be off, heat or cool (one relay: no auto)");
    thermostat_.set_mode(*parsed);
    result.add("mode", Value::of(wire_name(*parsed)));
    state_changed = true;
  } else if (cmd.name == "set_light") {
    if (!config_.fitted.light_relay) return fail("failed", "no light relay fitted");
    const Value* on = cmd.params.find("on");
    const Value* brightness = cmd.params.find("brightness");
    if (on == nullptr && brightness == nullptr) return fail("bad_params", "set_light needs on or brightness");
    if (on != nullptr && on->type != Value::Type::kBool) return fail("bad_params", "on must be a boolean");
    if (brightness != nullptr &&
        (brightness->type != Value::Type::kNumber || brightness->number < 0 || brightness->number > 100)) {
      return fail("bad_params", "brightness must be 0..100");
    }
    // A relay cannot dim: any brightness above 0 is full on.
    bool want = on != nullptr ? on->boolean : true;
    if (brightness != nullptr && brightness->number == 0) want = false;
    set_light(want, out);
    result.add("on", Value::of(want));
    result.add("brightness", Value::of(want ? 100 : 0));
    state_changed = true;
  } else if (cmd.name == "set_setback") {
    const std::optional<std::uint16_t> start = minute("start_minute");
    const std::optional<std::uint16_t> end = minute("end_minute");
    const std::optional<double> setpoint = number("setpoint");
    if (!start || !end || !setpoint || !thermostat_.set_setback({*start, *end, *setpoint})) {
      return fail("bad_params", "start_minute and end_minute must be 0..1439, setpoint 5..35");
    }
    result.add("start_minute", Value::of(static_cast<double>(*start)));
    result.add("end_minute", Value::of(static_cast<double>(*end)));
    result.add("setpoint", Value::of(*setpoint));
    state_changed = true;
  } else {
    return fail("unknown_command", cmd.name);
  }
  ack_.status = AckStatus::kOk;
  return state_changed;
}

void RoomController::set_light(bool on, Outbox& out) {
  if (on == light_on_) return;
  light_on_ = on;
  out.light_relay = on;
}

void RoomController::on_readings(const Readings& readings, const Now& now, Outbox& out) {
  if (!valid_) return;
  readings_ = readings;
  // The air sensor leads; the thermistor stands in when it fails.
  if (readings.temperature) {
    thermostat_.on_reading(*readings.temperature, now.mono_ms);
  } else if (readings.probe_temperature) {
    thermostat_.on_reading(*readings.probe_temperature, now.mono_ms);
  }
  if (config_.fitted.gas && readings.gas_ppm) {
    const double ppm = *readings.gas_ppm;
    GasLevel level = GasLevel::kClear;
    if (ppm >= config_.gas_alarm_ppm) {
      level = GasLevel::kAlarm;
    } else if (ppm >= config_.gas_warning_ppm) {
      // Falling from alarm, the level holds until the air is clear again.
      level = gas_level_ == GasLevel::kAlarm ? GasLevel::kAlarm : GasLevel::kWarning;
    }
    if (level != gas_level_) {
      gas_level_ = level;
      PendingEvent event;
      event.kind = EventKind::kGas;
      event.mono_ms = now.mono_ms;
      event.gas_ppm = ppm;
      event.level = level;
      queue_event(event, now, out);
      publish_state(now, out);
    }
  }
  control(now, out);
}

void RoomController::on_door(bool open, const Now& now, Outbox& out) {
  if (!valid_ || !config_.fitted.door || open == door_open_) return;
  door_open_ = open;
  if (open) {
    door_opened_mono_ = now.mono_ms;
    breach_reported_ = false;
  }
  PendingEvent event;
  event.kind = EventKind::kDoor;
  event.mono_ms = now.mono_ms;
  event.open = open;
  queue_event(event, now, out);
  publish_state(now, out);
}

void RoomController::set_door_at_boot(bool open, const Now& now) {
  door_open_ = config_.fitted.door && open;
  door_opened_mono_ = now.mono_ms;
  breach_reported_ = false;
}

void RoomController::on_button(const Now& now, Outbox& out) {
  if (!valid_ || !config_.fitted.light_relay) return;
  set_light(!light_on_, out);
  PendingEvent event;
  event.kind = EventKind::kButton;
  event.mono_ms = now.mono_ms;
  queue_event(event, now, out);
  publish_state(now, out);
}

void RoomController::tick(const Now& now, Outbox& out) {
  if (!valid_) return;
  if (door_open_ && !breach_reported_ && now.mono_ms - door_opened_mono_ >= config_.door_held_open_ms) {
    breach_reported_ = true;
    PendingEvent event;
    event.kind = EventKind::kBreach;
    event.mono_ms = now.mono_ms;
    queue_event(event, now, out);
  }
  control(now, out);
  if (!connected_ || now.unix_ms == 0) return;
  if (last_telemetry_mono_ && now.mono_ms - *last_telemetry_mono_ < config_.telemetry_interval_ms) return;
  last_telemetry_mono_ = now.mono_ms;
  Telemetry& t = telemetry_;
  t.metrics.clear();
  t.ts = now.unix_ms;
  t.seq = seq_++;  // wraps at 2^32 as the protocol says
  // A reading outside the protocol's range is a sensor fault: leave it out
  // rather than have the gateway reject the whole message.
  auto metric = [&](std::string_view name, const std::optional<double>& value) {
    if (value && metric_in_range(name, *value)) t.metrics.add(name, Value::of(*value));
  };
  metric("temperature", readings_.temperature);
  metric("setpoint", thermostat_.target());
  metric("humidity", readings_.humidity);
  metric("luminosity", readings_.luminosity);
  metric("probe_temperature", readings_.probe_temperature);
  if (config_.fitted.gas) metric("gas_ppm", readings_.gas_ppm);
  metric("rssi", readings_.rssi);
  // What the device refused or lost, so the gateway's dashboards show it.
  const ControllerCounters& c = counters_;
  metric("commands_rejected", static_cast<double>(c.rejected.total() + c.foreign_topic + c.clock_unset));
  metric("events_lost", static_cast<double>(c.events_lost));
  out.add(Channel::kTelemetry, 0, false, t);
}

void RoomController::control(const Now& now, Outbox& out) {
  const bool before = thermostat_.relay_on();
  const bool after = thermostat_.update(now.mono_ms, now.local_minute);
  if (after != before) {
    out.hvac_relay = after;
    publish_state(now, out);
  }
}

void RoomController::publish_state(const Now& now, Outbox& out) {
  if (!connected_) return;  // the whole state goes out on (re)connect
  StateReport& state = state_;
  state.values.clear();
  state.ts = now.unix_ms;
  const ThermostatSettings& s = thermostat_.settings();
  state.values.add("setpoint", Value::of(s.setpoint));
  state.values.add("mode", Value::of(wire_name(s.mode)));
  state.values.add("hvac_on", Value::of(thermostat_.relay_on()));
  if (config_.fitted.light_relay) {
    state.values.add("on", Value::of(light_on_));
    state.values.add("brightness", Value::of(light_on_ ? 100 : 0));
  }
  if (config_.fitted.door) state.values.add("open", Value::of(door_open_));
  if (config_.fitted.gas) state.values.add("alarm", Value::of(gas_level_ == GasLevel::kAlarm));
  out.add(Channel::kState, 1, true, state);
}

void RoomController::queue_event(const PendingEvent& event, const Now& now, Outbox& out) {
  if (pending_count_ == kMaxPendingEvents) {
    // Keep the newest: the latest door or gas state matters most.
    for (std::size_t i = 1; i < kMaxPendingEvents; ++i) pending_[i - 1] = pending_[i];
    --pending_count_;
    ++counters_.events_lost;
  }
  PendingEvent& slot = pending_[pending_count_++];
  slot = event;
  slot.id = next_event_id_++;
  if (next_event_id_ == 0) next_event_id_ = 1;  // 0 means "not an event"
  if (connected_) flush_events(now, out);
}

void RoomController::on_delivered(std::uint32_t event_id) {
  for (std::size_t i = 0; i < pending_count_; ++i) {
    if (pending_[i].id != event_id) continue;
    for (std::size_t k = i + 1; k < pending_count_; ++k) pending_[k - 1] = pending_[k];
    --pending_count_;
    return;
  }
}

// Every event not yet acknowledged goes out (again): at least once, since a
// door or gas event lost in a Wi-Fi drop would be worse than a duplicate.
void RoomController::flush_events(const Now& now, Outbox& out) {
  if (now.unix_ms == 0) return;  // no timestamps yet: keep them
  for (std::size_t i = 0; i < pending_count_; ++i) {
    const PendingEvent& p = pending_[i];
    Event& e = event_;
    e.data.clear();
    // Stamped with when it happened, not when it could be sent.
    e.ts = now.unix_ms - (now.mono_ms - p.mono_ms);
    e.kind = p.kind;
    switch (p.kind) {
      case EventKind::kDoor: e.data.add("open", Value::of(p.open)); break;
      case EventKind::kBreach: e.data.add("reason", Value::of("held_open")); break;
      case EventKind::kGas:
        e.data.add("gas_ppm", Value::of(p.gas_ppm));
        e.data.add("level", Value::of(wire_name(p.level)));
        break;
      case EventKind::kButton: e.data.add("press", Value::of("short")); break;
      case EventKind::kBattery: break;
    }
    if (!out.add(Channel::kEvent, 1, false, e, p.id)) return;  // outbox full: the rest go next time
  }
}

}  // namespace bellhop

// The room controller core: what a device does on the protocol, without I/O.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "bellhop/codec.hpp"
#include "bellhop/room_controller.hpp"

namespace bellhop {
namespace {

constexpr std::uint64_t kT0 = 1763790000000;  // Unix ms at boot + 0

// Remembers the running test's name, to derive device ids from it.
const char* g_test_name = "";
struct TestNameListener : doctest::IReporter {
  explicit TestNameListener(const doctest::ContextOptions&) {}
  void test_case_start(const doctest::TestCaseData& data) override { g_test_name = data.m_name; }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("test_name", 1, TestNameListener);

struct Sent {
  Channel channel;
  std::uint8_t qos;
  bool retained;
  std::string payload;
};

// A controller with a clock, and everything it asked for so far. Ids come
// from the test's name so no two tests share one.
class Room {
 public:
  explicit Room(ThermostatSettings saved = {}, ControllerConfig config = {})
      : device_id_(device_id_for_test()),
        controller_({"hotel-a", device_id_, DeviceKind::kThermostat, "1.0.0+esp32"}, saved, config) {
    REQUIRE(controller_.valid());
  }

  static std::string device_id_for_test() {
    std::string id = "r-";
    for (const char* p = g_test_name; *p != '\0' && id.size() < 64; ++p) {
      const char c = *p;
      id += ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '_';
    }
    return id;
  }

  Now now() const {
    Now n;
    n.mono_ms = mono_;
    n.unix_ms = clock_set_ ? kT0 + mono_ : 0;
    if (clock_set_) n.local_minute = static_cast<std::uint16_t>(((kT0 + mono_) / 60000) % 1440);
    return n;
  }
  void advance(std::uint64_t ms) { mono_ += ms; }
  void clock_set(bool set) { clock_set_ = set; }
  // Whether the broker acknowledges what is published (false: the link died mid-way).
  void broker_acks(bool acks) { broker_acks_ = acks; }

  template <typename F>
  std::vector<Sent> run(F&& f) {
    Outbox out;
    f(controller_, now(), out);
    std::vector<Sent> sent;
    for (const Publication& p : out) {
      sent.push_back({p.channel, p.qos, p.retained, std::string(p.payload)});
      check_edge_accepts(p);
      if (broker_acks_ && p.event_id != 0) controller_.on_delivered(p.event_id);
    }
    if (out.hvac_relay) heating_ = *out.hvac_relay;
    if (out.light_relay) light_ = *out.light_relay;
    saves_ += out.save_settings ? 1 : 0;
    return sent;
  }

  std::vector<Sent> connect() {
    return run([](RoomController& c, const Now& n, Outbox& o) { c.on_connected(n, o); });
  }
  std::vector<Sent> command(const std::string& payload, bool broadcast = false) {
    const std::string topic(broadcast ? controller_.broadcast_topic().view()
                                      : controller_.topic(Channel::kCmd).view());
    return run([&](RoomController& c, const Now& n, Outbox& o) { c.on_message(topic, payload, n, o); });
  }
  std::vector<Sent> readings(const Readings& r) {
    return run([&](RoomController& c, const Now& n, Outbox& o) { c.on_readings(r, n, o); });
  }
  std::vector<Sent> tick() {
    return run([](RoomController& c, const Now& n, Outbox& o) { c.tick(n, o); });
  }
  std::vector<Sent> door(bool open) {
    return run([&](RoomController& c, const Now& n, Outbox& o) { c.on_door(open, n, o); });
  }

  RoomController& controller() { return controller_; }
  bool heating() const { return heating_; }
  bool light() const { return light_; }
  int saves() const { return saves_; }

  // Everything the device publishes passes the gateway's validation.
  void check_edge_accepts(const Publication& p) {
    Decoded decoded;
    const std::string topic(controller_.topic(p.channel).view());
    const Reject r = edge_.decode(topic, p.payload, "hotel-a", decoded);
    CHECK_MESSAGE(r == Reject::kNone, "edge rejects " << p.payload << ": " << reject_name(r));
    CHECK(decoded.device_id == device_id_);
  }

 private:
  std::string device_id_;
  RoomController controller_;
  Decoder edge_;
  std::uint64_t mono_ = 0;
  bool clock_set_ = true;
  bool broker_acks_ = true;
  bool heating_ = false;
  bool light_ = false;
  int saves_ = 0;
};

std::string cmd(const std::string& id, const std::string& name, const std::string& params,
                std::uint64_t expires_at = kT0 + 60000) {
  return R"({"v":1,"id":")" + id + R"(","name":")" + name + R"(","params":)" + params +
         R"(,"expires_at":)" + std::to_string(expires_at) + "}";
}

std::vector<Sent> on(const std::vector<Sent>& sent, Channel channel) {
  std::vector<Sent> out;
  for (const Sent& s : sent) {
    if (s.channel == channel) out.push_back(s);
  }
  return out;
}

}  // namespace

TEST_CASE("on connect: retained birth message, then the retained state") {
  Room room;
  const std::vector<Sent> sent = room.connect();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].channel == Channel::kStatus);
  CHECK(sent[0].retained);
  CHECK(sent[0].qos == 1);
  CHECK(sent[0].payload ==
        R"({"v":1,"state":"online","ts":1763790000000,"kind":"thermostat","firmware":"1.0.0+esp32"})");
  CHECK(sent[1].channel == Channel::kState);
  CHECK(sent[1].retained);
  CHECK(sent[1].payload.find(R"("setpoint":21,"mode":"heat","hvac_on":false)") != std::string::npos);
  CHECK(RoomController::will_payload() == "offline");
}

TEST_CASE("a command runs once, is acked, saved and reported") {
  Room room;
  room.connect();
  const std::vector<Sent> sent = room.command(cmd("c-1", "set_setpoint", R"({"setpoint":23.5})"));
  const std::vector<Sent> acks = on(sent, Channel::kAck);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].payload == R"({"v":1,"id":"c-1","status":"ok","result":{"setpoint":23.5}})");
  CHECK(acks[0].qos == 1);
  CHECK_FALSE(acks[0].retained);
  REQUIRE(on(sent, Channel::kState).size() == 1);
  CHECK(on(sent, Channel::kState)[0].payload.find(R"("setpoint":23.5)") != std::string::npos);
  CHECK(room.controller().settings().setpoint == 23.5);
  CHECK(room.saves() == 1);
}

TEST_CASE("a redelivered command is not run again and gets the first ack again") {
  Room room;
  room.connect();
  const std::string first = on(room.command(cmd("c-2", "set_setpoint", R"({"setpoint":19})")), Channel::kAck)[0].payload;
  room.command(cmd("c-3", "set_setpoint", R"({"setpoint":25})"));
  room.advance(1000);
  const std::vector<Sent> again = room.command(cmd("c-2", "set_setpoint", R"({"setpoint":19})"));
  REQUIRE(again.size() == 1);
  CHECK(again[0].payload == first);
  CHECK(room.controller().settings().setpoint == 25);  // c-2 did not run twice
  CHECK(room.controller().counters().executed == 2);
  CHECK(room.controller().counters().duplicates == 1);
  CHECK(room.saves() == 2);
}

TEST_CASE("an expired command is refused with an expired ack") {
  Room room;
  room.connect();
  room.advance(5000);
  const std::vector<Sent> sent = room.command(cmd("c-4", "set_setpoint", R"({"setpoint":30})", kT0 + 5000));
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].payload == R"({"v":1,"id":"c-4","status":"expired","error":"command expired"})");
  CHECK(room.controller().settings().setpoint == 21);
  CHECK(room.controller().counters().expired == 1);
}

TEST_CASE("an undecodable command is dropped and counted, never acked") {
  Room room;
  room.connect();
  CHECK(room.command("{\"id\":\"c-5\",").empty());
  CHECK(room.command(cmd("c/6", "lock", "{}")).empty());
  CHECK(room.command(std::string(5000, '{')).empty());
  const RejectCounters& rejected = room.controller().counters().rejected;
  CHECK(rejected[Reject::kMalformedJson] == 1);
  CHECK(rejected[Reject::kBadId] == 1);
  CHECK(rejected[Reject::kTooLarge] == 1);
  // ... and the count reaches the gateway with the telemetry.
  const std::vector<Sent> telemetry = on(room.tick(), Channel::kTelemetry);
  REQUIRE(telemetry.size() == 1);
  CHECK(telemetry[0].payload.find(R"("commands_rejected":3)") != std::string::npos);
}

TEST_CASE("before the clock is set a command is not judged; once set, the same id runs") {
  Room room;
  room.connect();
  room.clock_set(false);
  CHECK(room.command(cmd("c-7", "set_setpoint", R"({"setpoint":22})")).empty());
  CHECK(room.controller().counters().clock_unset == 1);
  room.clock_set(true);
  const std::vector<Sent> acks = on(room.command(cmd("c-7", "set_setpoint", R"({"setpoint":22})")), Channel::kAck);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].payload.find(R"("status":"ok")") != std::string::npos);
}

TEST_CASE("unknown commands and bad params get an error ack and change nothing") {
  Room room;
  room.connect();
  CHECK(on(room.command(cmd("c-8", "self_destruct", "{}")), Channel::kAck)[0].payload ==
        R"({"v":1,"id":"c-8","status":"error","error":"unknown_command: self_destruct"})");
  CHECK(on(room.command(cmd("c-9", "set_setpoint", R"({"setpoint":40})")), Channel::kAck)[0].payload ==
        R"({"v":1,"id":"c-9","status":"error","error":"bad_params: setpoint must be a number in 5..35"})");
  CHECK(on(room.command(cmd("c-10", "set_mode", R"({"mode":"turbo"})")), Channel::kAck)[0].payload.find(
            "bad_params") != std::string::npos);
  CHECK(on(room.command(cmd("c-11", "set_light", "{}")), Channel::kAck)[0].payload.find("bad_params") !=
        std::string::npos);
  CHECK(room.controller().settings().setpoint == 21);
  CHECK(room.saves() == 0);
}

TEST_CASE("commands on the broadcast topic are answered; other topics are ignored") {
  Room room;
  room.connect();
  const std::vector<Sent> sent = room.command(cmd("fleet-1", "ping", "{}"), /*broadcast=*/true);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].payload == R"({"v":1,"id":"fleet-1","status":"ok","result":{"uptime_s":0}})");
  Outbox out;
  room.controller().on_message("hotel/hotel-a/device/someone-else/cmd", cmd("x-1", "ping", "{}"), room.now(), out);
  CHECK(out.size() == 0);
  CHECK(room.controller().counters().foreign_topic == 1);
}

TEST_CASE("set_light switches the light relay and reports it") {
  Room room;
  room.connect();
  const std::vector<Sent> sent = room.command(cmd("c-12", "set_light", R"({"brightness":40})"));
  CHECK(on(sent, Channel::kAck)[0].payload ==
        R"({"v":1,"id":"c-12","status":"ok","result":{"on":true,"brightness":100}})");
  CHECK(room.light());
  CHECK(on(sent, Channel::kState)[0].payload.find(R"("on":true,"brightness":100)") != std::string::npos);
  room.command(cmd("c-13", "set_light", R"({"on":false})"));
  CHECK_FALSE(room.light());
}

TEST_CASE("heating follows the room temperature with hysteresis") {
  Room room;
  room.connect();
  room.readings({20.0, 40.0, std::nullopt, 300.0, 0.0, -60.0});
  CHECK(room.heating());
  room.readings({21.1, 40.0, std::nullopt, 300.0, 0.0, -60.0});
  CHECK(room.heating());  // inside the dead band
  room.readings({21.4, 40.0, std::nullopt, 300.0, 0.0, -60.0});
  CHECK_FALSE(room.heating());
}

TEST_CASE("with the gateway unreachable the room keeps its last setpoint and schedule") {
  ControllerConfig config;
  Room room({}, config);
  room.connect();
  room.command(cmd("c-14", "set_setpoint", R"({"setpoint":24})"));
  room.command(cmd("c-15", "set_setback", R"({"start_minute":0,"end_minute":1,"setpoint":16})"));
  room.controller().on_disconnected();
  // Hours offline: no publication at all, control carries on at 24 degC.
  bool heated = false;
  bool idled = false;
  for (int minute = 0; minute < 600; ++minute) {
    room.advance(60000);
    const double air = room.heating() ? 24.4 : 23.6;
    CHECK(room.readings({air, 40.0, std::nullopt, std::nullopt, std::nullopt, std::nullopt}).empty());
    CHECK(room.tick().empty());
    heated = heated || room.heating();
    idled = idled || !room.heating();
  }
  CHECK(heated);
  CHECK(idled);
  CHECK(room.controller().settings().setpoint == 24);
  CHECK(room.controller().settings().setback.setpoint == 16);
  // And a reboot while offline restores them from what was saved.
  Room rebooted(room.controller().settings());
  CHECK(rebooted.controller().settings().setpoint == 24);
  CHECK(rebooted.controller().settings().setback.end_minute == 1);
}

TEST_CASE("a failed air sensor hands control to the thermistor; with neither the heating stops") {
  ControllerConfig config;
  config.thermostat.reading_timeout_ms = 60000;
  Room room({}, config);
  room.readings({std::nullopt, std::nullopt, 18.0, std::nullopt, std::nullopt, std::nullopt});
  CHECK(room.heating());
  room.advance(61000);
  room.tick();
  CHECK_FALSE(room.heating());
  CHECK(room.controller().thermostat().fault() == ThermostatFault::kNoReading);
}

TEST_CASE("events raised while offline are sent on reconnect, stamped when they happened") {
  Room room;
  room.connect();
  room.controller().on_disconnected();
  room.advance(1000);
  CHECK(room.door(true).empty());
  room.advance(2000);
  CHECK(room.door(false).empty());
  room.advance(7000);
  const std::vector<Sent> events = on(room.connect(), Channel::kEvent);
  REQUIRE(events.size() == 2);
  CHECK(events[0].payload == R"({"v":1,"ts":1763790001000,"kind":"door","data":{"open":true}})");
  CHECK(events[1].payload == R"({"v":1,"ts":1763790003000,"kind":"door","data":{"open":false}})");
  CHECK(on(room.connect(), Channel::kEvent).empty());  // sent once
}

TEST_CASE("an event whose publication was not acknowledged is sent again after reconnecting") {
  Room room;
  room.connect();
  room.broker_acks(false);
  room.advance(1000);
  REQUIRE(on(room.door(true), Channel::kEvent).size() == 1);  // the link died during this publish
  room.controller().on_disconnected();
  room.broker_acks(true);
  room.advance(5000);
  const std::vector<Sent> again = on(room.connect(), Channel::kEvent);
  REQUIRE(again.size() == 1);
  CHECK(again[0].payload == R"({"v":1,"ts":1763790001000,"kind":"door","data":{"open":true}})");
  CHECK(on(room.connect(), Channel::kEvent).empty());  // acknowledged now: not again
}

TEST_CASE("the offline event queue keeps the newest events and counts the rest") {
  Room room;
  room.controller().on_disconnected();
  for (int i = 0; i < 20; ++i) {
    room.advance(100);
    room.door(i % 2 == 0);
  }
  CHECK(on(room.connect(), Channel::kEvent).size() == 8);
  CHECK(room.controller().counters().events_lost == 12);
}

TEST_CASE("a door held open raises one breach") {
  ControllerConfig config;
  config.door_held_open_ms = 60000;
  Room room({}, config);
  room.connect();
  CHECK(on(room.door(true), Channel::kEvent).size() == 1);
  room.advance(59999);
  CHECK(on(room.tick(), Channel::kEvent).empty());
  room.advance(1);
  const std::vector<Sent> breach = on(room.tick(), Channel::kEvent);
  REQUIRE(breach.size() == 1);
  CHECK(breach[0].payload.find(R"("kind":"breach","data":{"reason":"held_open"})") != std::string::npos);
  room.advance(60000);
  CHECK(on(room.tick(), Channel::kEvent).empty());
}

TEST_CASE("gas events on crossing warning and alarm, and clear only below warning") {
  Room room;
  room.connect();
  auto gas = [&](double ppm) {
    room.advance(1000);
    return on(room.readings({21.0, 40.0, std::nullopt, std::nullopt, ppm, std::nullopt}), Channel::kEvent);
  };
  CHECK(gas(500).empty());
  REQUIRE(gas(1200).size() == 1);
  const std::vector<Sent> alarm = gas(6000);
  REQUIRE(alarm.size() == 1);
  CHECK(alarm[0].payload.find(R"("gas_ppm":6000,"level":"alarm")") != std::string::npos);
  CHECK(gas(3000).empty());  // still dangerous: no all-clear yet
  const std::vector<Sent> clear = gas(400);
  REQUIRE(clear.size() == 1);
  CHECK(clear[0].payload.find(R"("level":"clear")") != std::string::npos);
}

TEST_CASE("telemetry every interval, seq counting up, faulty readings left out") {
  ControllerConfig config;
  config.telemetry_interval_ms = 10000;
  Room room({}, config);
  room.connect();
  room.readings({21.5, 40.25, 20.0, 999999.0, 12.0, -61.0});  // luminosity beyond 200,000: a fault
  const std::vector<Sent> first = on(room.tick(), Channel::kTelemetry);
  REQUIRE(first.size() == 1);
  CHECK(first[0].qos == 0);
  CHECK(first[0].payload ==
        R"({"v":1,"ts":1763790000000,"seq":0,"metrics":{"temperature":21.5,"setpoint":21,"humidity":40.25,)"
        R"("probe_temperature":20,"gas_ppm":12,"rssi":-61,"commands_rejected":0,"events_lost":0}})");
  room.advance(9999);
  CHECK(on(room.tick(), Channel::kTelemetry).empty());
  room.advance(1);
  const std::vector<Sent> second = on(room.tick(), Channel::kTelemetry);
  REQUIRE(second.size() == 1);
  CHECK(second[0].payload.find(R"("seq":1,)") != std::string::npos);
}

TEST_CASE("a door open at boot is reported in the state, and held open it raises a breach") {
  ControllerConfig config;
  config.door_held_open_ms = 60000;
  Room room({}, config);
  room.controller().set_door_at_boot(true, room.now());
  const std::vector<Sent> sent = room.connect();
  CHECK(on(sent, Channel::kEvent).empty());
  CHECK(on(sent, Channel::kState)[0].payload.find(R"("open":true)") != std::string::npos);
  room.advance(60000);
  CHECK(on(room.tick(), Channel::kEvent).size() == 1);
}

TEST_CASE("a clean shutdown publishes the retained offline status with its time") {
  Room room;
  room.connect();
  room.advance(5000);
  const std::vector<Sent> sent = room.run([](RoomController& c, const Now& n, Outbox& o) { c.on_shutdown(n, o); });
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].channel == Channel::kStatus);
  CHECK(sent[0].retained);
  CHECK(sent[0].payload == R"({"v":1,"state":"offline","ts":1763790005000})");
}

TEST_CASE("an invalid identity leaves the controller inert") {
  RoomController bad({"hotel/a", "r1", DeviceKind::kThermostat, "1.0"}, {});
  CHECK_FALSE(bad.valid());
  Outbox out;
  bad.on_connected({}, out);
  bad.on_message("hotel/a/device/r1/cmd", "{}", {}, out);
  CHECK(out.size() == 0);
}

}  // namespace bellhop

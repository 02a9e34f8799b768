// The shared device-protocol vectors (firmware/vectors/), run against the C++ core.
//
// Every section of every vector file is run here; a file or section this
// test does not know fails it, so new vectors cannot be skipped silently.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>

#include "bellhop/codec.hpp"
#include "bellhop/command_guard.hpp"
#include "bellhop/topics.hpp"
#include "message_json.hpp"
#include "vector_files.hpp"

namespace bellhop::test {
namespace {

Channel channel_named(const std::string& name) {
  const std::optional<Channel> channel = channel_from(name);
  REQUIRE_MESSAGE(channel.has_value(), "unknown channel " << name);
  return *channel;
}

std::string expected_error(const Json& v) {
  if (v.contains("error")) return v.at("error").get<std::string>();
  if (v.contains("expect") && v.at("expect").contains("error")) {
    return v.at("expect").at("error").get<std::string>();
  }
  return "none";
}

// The expected message with its keys in our order (vectors may order them freely).
Json normalised(const Json& expected, const Json& actual) {
  Json out = Json::object();
  for (const auto& [k, v] : actual.items()) {
    if (k == "device_id") continue;
    out[k] = expected.contains(k) ? with_numbers_as_doubles(expected.at(k)) : Json("<missing>");
  }
  return out;
}

Json without(Json j, const char* key) {
  j.erase(key);
  return j;
}

void check_sections(const Json& file, std::initializer_list<const char*> handled) {
  for (const auto& [key, value] : file.items()) {
    const bool known = key == "description" || key == "hotel_id" || key == "max_bytes" ||
                       std::find_if(handled.begin(), handled.end(),
                                    [&](const char* h) { return key == h; }) != handled.end();
    CHECK_MESSAGE(known, "vector section '" << key << "' is not run by the C++ core");
  }
}

}  // namespace

TEST_CASE("every vector file is one this test runs") {
  const std::set<std::string> known = {"topics.json", "commands.json", "encode.json", "decode.json"};
  std::size_t seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(vectors_dir())) {
    if (entry.path().extension() != ".json") continue;
    ++seen;
    CHECK_MESSAGE(known.count(entry.path().filename().string()) == 1,
                  "vector file " << entry.path().filename() << " is not run by the C++ core");
  }
  CHECK(seen == known.size());
}

TEST_CASE("topics.json") {
  const Json file = load_vectors("topics.json");
  check_sections(file, {"build", "broadcast", "subscriptions", "parse"});

  for (const Json& v : file.at("build")) {
    INFO("build/" << v.at("name").get<std::string>());
    TopicBuffer topic;
    const Reject r = build_topic(v.at("hotel_id").get<std::string>(), v.at("device_id").get<std::string>(),
                                 channel_named(v.at("channel").get<std::string>()), topic);
    CHECK(std::string(reject_name(r)) == expected_error(v));
    if (r == Reject::kNone) {
      CHECK(std::string(topic.view()) == v.at("topic").get<std::string>());
      CHECK(std::string(topic.c_str()) == v.at("topic").get<std::string>());
    }
  }
  for (const Json& v : file.at("broadcast")) {
    INFO("broadcast/" << v.at("name").get<std::string>());
    TopicBuffer topic;
    const Reject r = build_broadcast_topic(v.at("hotel_id").get<std::string>(), topic);
    CHECK(std::string(reject_name(r)) == expected_error(v));
    if (r == Reject::kNone) CHECK(std::string(topic.view()) == v.at("topic").get<std::string>());
  }
  for (const Json& v : file.at("subscriptions")) {
    INFO("subscriptions/" << v.at("name").get<std::string>());
    std::array<TopicBuffer, kDeviceChannelCount> filters;
    const Reject r = build_subscriptions(v.at("hotel_id").get<std::string>(), filters);
    CHECK(std::string(reject_name(r)) == expected_error(v));
    if (r != Reject::kNone) continue;
    Json got = Json::array();
    for (const TopicBuffer& f : filters) got.push_back(std::string(f.view()));
    CHECK(got == v.at("filters"));
  }
  for (const Json& v : file.at("parse")) {
    INFO("parse/" << v.at("name").get<std::string>());
    const std::string topic_text = v.at("topic").get<std::string>();
    Topic topic;
    const Reject r = parse_topic(topic_text, v.at("hotel_id").get<std::string>(), topic);
    CHECK(std::string(reject_name(r)) == expected_error(v));
    if (r != Reject::kNone) continue;
    const Json& ok = v.at("expect").at("ok");
    CHECK(std::string(topic.hotel_id) == ok.at("hotel_id").get<std::string>());
    CHECK(std::string(topic.device_id) == ok.at("device_id").get<std::string>());
    CHECK(std::string(wire_name(topic.channel)) == ok.at("channel").get<std::string>());
  }
}

TEST_CASE("commands.json: decoding commands") {
  const Json file = load_vectors("commands.json");
  check_sections(file, {"decode", "guard"});
  Decoder decoder;
  for (const Json& v : file.at("decode")) {
    INFO("decode/" << v.at("name").get<std::string>());
    const std::string payload = payload_of(v);
    Command cmd;
    const Reject r = decoder.decode_command(payload, cmd, v.value("max_bytes", kMaxPayloadBytes));
    CHECK(std::string(reject_name(r)) == expected_error(v));
    if (r != Reject::kNone) continue;
    const Json& ok = v.at("expect").at("ok");
    CHECK(std::string(cmd.id) == ok.at("id").get<std::string>());
    CHECK(std::string(cmd.name) == ok.at("name").get<std::string>());
    CHECK(json_of(cmd.params) == with_numbers_as_doubles(ok.at("params")));
    CHECK(cmd.expires_at == ok.at("expires_at").get<std::uint64_t>());
  }
}

TEST_CASE("commands.json: the command guard") {
  const Json file = load_vectors("commands.json");
  Decoder decoder;
  for (const Json& v : file.at("guard")) {
    INFO("guard/" << v.at("name").get<std::string>());
    CommandGuard<64> guard(v.at("capacity").get<std::size_t>());
    REQUIRE(guard.capacity() == v.at("capacity").get<std::size_t>());
    std::size_t step_no = 0;
    for (const Json& step : v.at("steps")) {
      INFO("step " << step_no++);
      const std::string payload = step.at("payload").get<std::string>();
      Command cmd;
      REQUIRE(decoder.decode_command(payload, cmd) == Reject::kNone);
      const GuardDecision decision = guard.check(cmd, step.at("now").get<std::uint64_t>());
      const Json& expect = step.at("expect");
      const std::string verdict = expect.at("verdict").get<std::string>();
      CHECK(verdict == (decision.verdict == Verdict::kExecute     ? "execute"
                        : decision.verdict == Verdict::kDuplicate ? "duplicate"
                                                                  : "expired"));
      std::string ack(decision.ack);
      if (decision.verdict == Verdict::kExecute && step.contains("outcome") && !step.at("outcome").is_null()) {
        // The device ran the command: encode its ack and let the guard keep it.
        const Json& outcome = step.at("outcome");
        Ack reply;
        reply.id = cmd.id;
        reply.status = *ack_status_from(outcome.at("status").get<std::string>());
        if (outcome.contains("result")) reply.result = entries_of(outcome.at("result"));
        std::string error;
        if (outcome.contains("error")) {
          error = outcome.at("error").get<std::string>();
          reply.error = error;
        }
        char buf[256];
        const std::size_t n = encode(reply, buf, sizeof buf);
        REQUIRE(n > 0);
        ack.assign(buf, n);
        CHECK(guard.record(cmd.id, ack));
      }
      if (expect.at("ack").is_null()) {
        CHECK(ack.empty());
      } else {
        CHECK(ack == expect.at("ack").get<std::string>());
      }
    }
  }
}

TEST_CASE("encode.json") {
  const Json file = load_vectors("encode.json");
  check_sections(file, {"vectors"});
  for (const Json& v : file.at("vectors")) {
    INFO("encode/" << v.at("name").get<std::string>());
    const Json& m = v.at("message");
    const std::string channel = v.at("channel").get<std::string>();
    char buf[1024];
    std::size_t n = 0;
    switch (channel_named(channel)) {
      case Channel::kTelemetry: {
        Telemetry t;
        t.ts = m.at("ts").get<std::uint64_t>();
        t.seq = m.at("seq").get<std::uint32_t>();
        t.metrics = entries_of(m.at("metrics"));
        n = encode(t, buf, sizeof buf);
        break;
      }
      case Channel::kState: {
        StateReport s;
        s.ts = m.at("ts").get<std::uint64_t>();
        s.values = entries_of(m.at("values"));
        n = encode(s, buf, sizeof buf);
        break;
      }
      case Channel::kEvent: {
        Event e;
        e.ts = m.at("ts").get<std::uint64_t>();
        e.kind = *event_kind_from(m.at("kind").get<std::string>());
        e.data = entries_of(m.at("data"));
        n = encode(e, buf, sizeof buf);
        break;
      }
      case Channel::kStatus: {
        Status s;
        s.online = m.at("online").get<bool>();
        if (!m.at("ts").is_null()) s.ts = m.at("ts").get<std::uint64_t>();
        if (!m.at("kind").is_null()) s.kind = device_kind_from(m.at("kind").get<std::string>());
        if (!m.at("firmware").is_null()) s.firmware = m.at("firmware").get_ref<const std::string&>();
        n = encode(s, buf, sizeof buf);
        break;
      }
      case Channel::kAck: {
        Ack a;
        a.id = m.at("id").get_ref<const std::string&>();
        a.status = *ack_status_from(m.at("status").get<std::string>());
        if (!m.at("result").is_null()) a.result = entries_of(m.at("result"));
        if (!m.at("error").is_null()) a.error = m.at("error").get_ref<const std::string&>();
        n = encode(a, buf, sizeof buf);
        break;
      }
      case Channel::kCmd: {
        Command c;
        c.id = m.at("id").get_ref<const std::string&>();
        c.name = m.at("name").get_ref<const std::string&>();
        c.params = entries_of(m.at("params"));
        c.expires_at = m.at("expires_at").get<std::uint64_t>();
        n = encode_command(c, buf, sizeof buf);
        break;
      }
    }
    REQUIRE(n > 0);
    CHECK(std::string(buf, n) == v.at("payload").get<std::string>());
  }
}

TEST_CASE("decode.json") {
  const Json file = load_vectors("decode.json");
  check_sections(file, {"vectors"});
  const std::string hotel_id = file.at("hotel_id").get<std::string>();
  const std::size_t default_max = file.value("max_bytes", kMaxPayloadBytes);
  Decoder decoder;
  std::size_t accepted = 0;
  std::size_t rejected = 0;
  for (const Json& v : file.at("vectors")) {
    INFO("decode/" << v.at("name").get<std::string>());
    const std::string topic = v.at("topic").get<std::string>();
    const std::string payload = payload_of(v);
    Decoded out;
    const Reject r = decoder.decode(topic, payload, v.value("hotel_id", hotel_id), out,
                                    v.value("max_bytes", default_max));
    CHECK(std::string(reject_name(r)) == expected_error(v));
    if (r != Reject::kNone) {
      ++rejected;
      continue;
    }
    ++accepted;
    const Json& expected = v.at("expect").at("ok");
    CHECK(std::string(out.device_id) == expected.at("device_id").get<std::string>());
    const Json actual = std::visit([](const auto& m) { return json_of(m); }, out.message);
    CHECK(actual == normalised(without(expected, "device_id"), actual));
    CHECK(expected.size() == actual.size() + 1);  // + device_id: no expected field unchecked
  }
  CHECK(accepted > 0);
  CHECK(rejected > 0);
}

TEST_CASE("decode.json: what decodes re-encodes to a payload that decodes the same") {
  const Json file = load_vectors("decode.json");
  const std::string hotel_id = file.at("hotel_id").get<std::string>();
  Decoder first;
  Decoder second;
  for (const Json& v : file.at("vectors")) {
    const std::string topic = v.at("topic").get<std::string>();
    const std::string payload = payload_of(v);
    Decoded a;
    if (first.decode(topic, payload, hotel_id, a, kMaxPayloadBytes) != Reject::kNone) continue;
    INFO("round trip/" << v.at("name").get<std::string>());
    char buf[kMaxPayloadBytes];
    const std::size_t n = encode(a.message, buf, sizeof buf);
    REQUIRE(n > 0);
    Decoded b;
    REQUIRE(second.decode(topic, std::string_view(buf, n), hotel_id, b) == Reject::kNone);
    const auto as_json = [](const Decoded& d) {
      return std::visit([](const auto& m) { return json_of(m); }, d.message);
    };
    CHECK(as_json(a) == as_json(b));
  }
}

}  // namespace bellhop::test

#include "bellhop/codec.hpp"

#include <algorithm>
#include <cmath>
#include <variant>

#include "bellhop/json_reader.hpp"
#include "bellhop/json_writer.hpp"
#include "bellhop/topics.hpp"

namespace bellhop {

namespace {

// How deep an ignored (unknown) field may nest, counting the payload's
// top-level object as 1.
constexpr std::size_t kMaxDepth = 4;

struct Range {
  std::string_view name;
  double low;
  double high;
};

// Bounds of the metrics (and same-named values) the protocol knows.
constexpr Range kMetricRanges[] = {
    {"temperature", -40, 125}, {"setpoint", 5, 35},         {"humidity", 0, 100},
    {"luminosity", 0, 200000}, {"brightness", 0, 100},      {"battery", 0, 100},
    {"gas_ppm", 0, 100000},    {"power_w", 0, 10000},       {"rssi", -127, 0},
};

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

bool metric_in_range(std::string_view name, double value) {
  for (const Range& range : kMetricRanges) {
    if (range.name == name) return value >= range.low && value <= range.high;
  }
  return value >= -kMetricLimit && value <= kMetricLimit;
}

// Field checks in the order, and with the codes, of the Python codec.
class FieldReader {
 public:
  explicit FieldReader(Decoder& decoder) : decoder_(decoder) { decoder_.used_ = 0; }

  Reject load(std::string_view payload, std::size_t max_bytes) {
    if (payload.empty()) return Reject::kEmpty;
    if (payload.size() > std::min(max_bytes, kMaxPayloadBytes)) return Reject::kTooLarge;
    if (!json::valid_utf8(payload)) return Reject::kNotUtf8;
    if (const Reject r = json::validate(payload); r != Reject::kNone) return r;
    obj_ = trim(payload);
    if (json::kind_of(obj_) != json::Kind::kObject) return Reject::kNotObject;
    std::string_view v;
    if (!json::find(obj_, "v", v)) return Reject::kNone;
    if (json::kind_of(v) != json::Kind::kNumber) return Reject::kWrongType;
    const json::Number n = json::read_number(v);
    if (!n.integral) return Reject::kWrongType;
    if (n.negative || n.magnitude_overflow || n.magnitude != kProtocolVersion) {
      return Reject::kUnsupportedVersion;
    }
    return Reject::kNone;
  }

  bool has(std::string_view key) const {
    std::string_view ignored;
    return json::find(obj_, key, ignored);
  }

  Reject require(std::string_view key, std::string_view& raw) const {
    return json::find(obj_, key, raw) ? Reject::kNone : Reject::kMissingField;
  }

  Reject integer(std::string_view key, std::uint64_t high, std::uint64_t& out) const {
    std::string_view raw;
    if (const Reject r = require(key, raw); r != Reject::kNone) return r;
    if (json::kind_of(raw) != json::Kind::kNumber) return Reject::kWrongType;
    const json::Number n = json::read_number(raw);
    if (!n.integral) return Reject::kWrongType;
    if ((n.negative && n.magnitude != 0) || n.magnitude_overflow || n.magnitude > high) {
      return Reject::kOutOfRange;
    }
    out = n.magnitude;
    return Reject::kNone;
  }

  // A string field, decoded.
  Reject text(std::string_view key, std::string_view& out) {
    std::string_view raw;
    if (const Reject r = require(key, raw); r != Reject::kNone) return r;
    if (json::kind_of(raw) != json::Kind::kString) return Reject::kWrongType;
    return store(raw, out);
  }

  Reject command_id(std::string_view& out) {
    if (const Reject r = text("id", out); r != Reject::kNone) return r;
    return valid_command_id(out) ? Reject::kNone : Reject::kBadId;
  }

  // A flat object of name -> boolean | number | string | null. `ranged`:
  // known names must lie in their range; command params are not ranged here
  // because the device judges them (and answers bad_params).
  Reject scalars(std::string_view raw, Entries& out, bool ranged = true) {
    out.clear();
    if (json::kind_of(raw) != json::Kind::kObject) return Reject::kWrongType;
    if (json::count_members(raw) > kMaxEntries) return Reject::kTooManyEntries;
    json::Members members(raw);
    std::string_view key;
    std::string_view item;
    while (members.next(key, item)) {
      std::string_view name;
      if (const Reject r = entry_name(key, name); r != Reject::kNone) return r;
      Value value;
      switch (json::kind_of(item)) {
        case json::Kind::kNull: break;
        case json::Kind::kBool: value = Value::of(item.front() == 't'); break;
        case json::Kind::kString: {
          const json::TextInfo info = json::text_info(item);
          if (info.chars > kMaxTextChars) return Reject::kTooLong;
          if (info.lone_surrogate) return Reject::kNotUtf8;
          std::string_view text;
          if (const Reject r = store(item, text); r != Reject::kNone) return r;
          value = Value::of(text);
          break;
        }
        case json::Kind::kNumber: {
          double number = 0;
          if (const Reject r = check_number(name, item, number, ranged); r != Reject::kNone) return r;
          value = Value::of(number);
          break;
        }
        case json::Kind::kArray:
        case json::Kind::kObject: return Reject::kWrongType;
      }
      out.add(name, value);
    }
    return Reject::kNone;
  }

  Reject metrics(std::string_view raw, Entries& out) {
    out.clear();
    if (json::kind_of(raw) != json::Kind::kObject) return Reject::kWrongType;
    if (json::count_members(raw) > kMaxEntries) return Reject::kTooManyEntries;
    json::Members members(raw);
    std::string_view key;
    std::string_view item;
    while (members.next(key, item)) {
      std::string_view name;
      if (const Reject r = entry_name(key, name); r != Reject::kNone) return r;
      if (json::kind_of(item) != json::Kind::kNumber) return Reject::kWrongType;
      double number = 0;
      if (const Reject r = check_number(name, item, number); r != Reject::kNone) return r;
      out.add(name, Value::of(number));
    }
    return Reject::kNone;
  }

  // Unknown fields are ignored (forward compatibility) but still bounded.
  template <std::size_t N>
  Reject extras(const std::string_view (&known)[N]) const {
    json::Members members(obj_);
    std::string_view key;
    std::string_view value;
    while (members.next(key, value)) {
      bool is_known = false;
      for (std::string_view k : known) is_known = is_known || json::text_equals(key, k);
      if (is_known) continue;
      if (const Reject r = check_any(value, 2); r != Reject::kNone) return r;
    }
    return Reject::kNone;
  }

 private:
  Reject store(std::string_view raw, std::string_view& out) {
    const json::TextInfo info = json::text_info(raw);
    auto& text = decoder_.text_;
    if (info.bytes > text.size() - decoder_.used_) return Reject::kTooLarge;  // cannot happen: text <= payload
    char* at = text.data() + decoder_.used_;
    decoder_.used_ += json::decode_text(raw, at);
    out = std::string_view(at, info.bytes);
    return Reject::kNone;
  }

  Reject entry_name(std::string_view raw_key, std::string_view& name) {
    if (const Reject r = store(raw_key, name); r != Reject::kNone) return r;
    return valid_name(name) ? Reject::kNone : Reject::kBadName;
  }

  static Reject check_number(std::string_view name, std::string_view raw, double& out,
                             bool ranged = true) {
    const json::Number n = json::read_number(raw);
    if (n.integral && n.magnitude_overflow) return Reject::kOutOfRange;  // an exact integer beyond any bound
    if (!std::isfinite(n.value)) return Reject::kNonFinite;
    double low = -kMetricLimit;
    double high = kMetricLimit;
    for (const Range& range : kMetricRanges) {
      if (ranged && range.name == name) {
        low = range.low;
        high = range.high;
      }
    }
    if (!(n.value >= low && n.value <= high)) return Reject::kOutOfRange;
    out = n.value;
    return Reject::kNone;
  }

  static Reject check_any(std::string_view raw, std::size_t depth) {
    if (depth > kMaxDepth) return Reject::kTooDeep;
    switch (json::kind_of(raw)) {
      case json::Kind::kNumber: {
        const json::Number n = json::read_number(raw);
        return n.integral || std::isfinite(n.value) ? Reject::kNone : Reject::kNonFinite;
      }
      case json::Kind::kString:
        return json::text_info(raw).lone_surrogate ? Reject::kNotUtf8 : Reject::kNone;
      case json::Kind::kObject: {
        json::Members members(raw);
        std::string_view key;
        std::string_view value;
        while (members.next(key, value)) {
          if (json::text_info(key).lone_surrogate) return Reject::kNotUtf8;
          if (const Reject r = check_any(value, depth + 1); r != Reject::kNone) return r;
        }
        return Reject::kNone;
      }
      case json::Kind::kArray: {
        json::Elements elements(raw);
        std::string_view value;
        while (elements.next(value)) {
          if (const Reject r = check_any(value, depth + 1); r != Reject::kNone) return r;
        }
        return Reject::kNone;
      }
      default: return Reject::kNone;
    }
  }

  Decoder& decoder_;
  std::string_view obj_;
};

namespace {

#define BELLHOP_TRY(expr)                               \
  do {                                                  \
    if (const Reject r_ = (expr); r_ != Reject::kNone) { \
      return r_;                                        \
    }                                                   \
  } while (false)

constexpr std::string_view kTelemetryKeys[] = {"v", "ts", "seq", "metrics"};
constexpr std::string_view kStateKeys[] = {"v", "ts", "values"};
constexpr std::string_view kEventKeys[] = {"v", "ts", "kind", "data"};
constexpr std::string_view kStatusKeys[] = {"v", "state", "ts", "kind", "firmware"};
constexpr std::string_view kAckKeys[] = {"v", "id", "status", "result", "error"};
constexpr std::string_view kCommandKeys[] = {"v", "id", "name", "params", "expires_at"};

Reject decode_telemetry(FieldReader& f, Telemetry& out) {
  BELLHOP_TRY(f.integer("ts", kMaxTs, out.ts));
  std::uint64_t seq = 0;
  BELLHOP_TRY(f.integer("seq", kMaxSeq, seq));
  out.seq = static_cast<std::uint32_t>(seq);
  std::string_view raw;
  BELLHOP_TRY(f.require("metrics", raw));
  BELLHOP_TRY(f.metrics(raw, out.metrics));
  return f.extras(kTelemetryKeys);
}

Reject decode_state(FieldReader& f, StateReport& out) {
  BELLHOP_TRY(f.integer("ts", kMaxTs, out.ts));
  std::string_view raw;
  BELLHOP_TRY(f.require("values", raw));
  BELLHOP_TRY(f.scalars(raw, out.values));
  return f.extras(kStateKeys);
}

// The one data field each event kind must carry, and whether it is a boolean
// (else a number).
struct RequiredData {
  EventKind kind;
  std::string_view key;
  bool boolean;
};
constexpr RequiredData kRequiredData[] = {
    {EventKind::kDoor, "open", true},
    {EventKind::kGas, "gas_ppm", false},
    {EventKind::kBattery, "battery", false},
};

Reject decode_event(FieldReader& f, Event& out) {
  BELLHOP_TRY(f.integer("ts", kMaxTs, out.ts));
  std::string_view kind_name;
  BELLHOP_TRY(f.text("kind", kind_name));
  const std::optional<EventKind> kind = event_kind_from(kind_name);
  if (!kind) return Reject::kInvalidValue;
  out.kind = *kind;
  out.data.clear();
  std::string_view raw;
  if (f.require("data", raw) == Reject::kNone) BELLHOP_TRY(f.scalars(raw, out.data));
  for (const RequiredData& required : kRequiredData) {
    if (required.kind != out.kind) continue;
    const Value* value = out.data.find(required.key);
    if (value == nullptr) return Reject::kMissingField;
    const Value::Type want = required.boolean ? Value::Type::kBool : Value::Type::kNumber;
    if (value->type != want) return Reject::kWrongType;
  }
  return f.extras(kEventKeys);
}

Reject decode_status(FieldReader& f, Status& out) {
  std::string_view state;
  BELLHOP_TRY(f.text("state", state));
  if (state != "online" && state != "offline") return Reject::kInvalidValue;
  out.online = state == "online";
  std::uint64_t ts = 0;
  BELLHOP_TRY(f.integer("ts", kMaxTs, ts));
  out.ts = ts;
  if (out.online || f.has("kind")) {
    std::string_view kind_name;
    BELLHOP_TRY(f.text("kind", kind_name));
    out.kind = device_kind_from(kind_name);
    if (!out.kind) return Reject::kInvalidValue;
  }
  if (out.online || f.has("firmware")) {
    std::string_view firmware;
    BELLHOP_TRY(f.text("firmware", firmware));
    if (!valid_firmware(firmware)) return Reject::kInvalidValue;
    out.firmware = firmware;
  }
  return f.extras(kStatusKeys);
}

Reject decode_ack(FieldReader& f, Ack& out) {
  BELLHOP_TRY(f.command_id(out.id));
  std::string_view status_name;
  BELLHOP_TRY(f.text("status", status_name));
  const std::optional<AckStatus> status = ack_status_from(status_name);
  if (!status) return Reject::kInvalidValue;
  out.status = *status;
  std::string_view raw;
  if (out.status == AckStatus::kOk) {
    if (f.has("error")) return Reject::kInvalidValue;
    if (f.require("result", raw) == Reject::kNone) {
      out.result.emplace();
      BELLHOP_TRY(f.scalars(raw, *out.result));
    }
  } else {
    if (f.has("result")) return Reject::kInvalidValue;
    if (out.status == AckStatus::kError || f.has("error")) {
      BELLHOP_TRY(f.require("error", raw));
      if (json::kind_of(raw) != json::Kind::kString) return Reject::kWrongType;
      const json::TextInfo info = json::text_info(raw);
      if (info.chars > kMaxTextChars) return Reject::kTooLong;
      if (info.lone_surrogate) return Reject::kNotUtf8;
      std::string_view error;
      BELLHOP_TRY(f.text("error", error));
      out.error = error;
    }
  }
  return f.extras(kAckKeys);
}

}  // namespace

Reject Decoder::decode(std::string_view topic, std::string_view payload, std::string_view hotel_id,
                       Decoded& out, std::size_t max_bytes) {
  Topic parsed;
  BELLHOP_TRY(parse_topic(topic, hotel_id, parsed));
  out.device_id = parsed.device_id;
  FieldReader f(*this);
  switch (parsed.channel) {
    case Channel::kTelemetry:
      BELLHOP_TRY(f.load(payload, max_bytes));
      return decode_telemetry(f, out.message.emplace<Telemetry>());
    case Channel::kState:
      BELLHOP_TRY(f.load(payload, max_bytes));
      return decode_state(f, out.message.emplace<StateReport>());
    case Channel::kEvent:
      BELLHOP_TRY(f.load(payload, max_bytes));
      return decode_event(f, out.message.emplace<Event>());
    case Channel::kAck:
      BELLHOP_TRY(f.load(payload, max_bytes));
      return decode_ack(f, out.message.emplace<Ack>());
    case Channel::kStatus:
      if (payload == kWillPayload) {
        out.message = Status{};
        return Reject::kNone;
      }
      BELLHOP_TRY(f.load(payload, max_bytes));
      return decode_status(f, out.message.emplace<Status>());
    case Channel::kCmd: break;
  }
  return Reject::kWrongDirection;
}

Reject Decoder::decode_command(std::string_view payload, Command& out, std::size_t max_bytes) {
  FieldReader f(*this);
  BELLHOP_TRY(f.load(payload, max_bytes));
  BELLHOP_TRY(f.command_id(out.id));
  BELLHOP_TRY(f.text("name", out.name));
  if (!valid_name(out.name)) return Reject::kBadName;
  std::string_view raw;
  BELLHOP_TRY(f.require("params", raw));
  BELLHOP_TRY(f.scalars(raw, out.params, /*ranged=*/false));
  BELLHOP_TRY(f.integer("expires_at", kMaxTs, out.expires_at));
  return f.extras(kCommandKeys);
}

#undef BELLHOP_TRY

namespace {

std::size_t finish(const json::Writer& w) { return w.ok() ? w.size() : 0; }

}  // namespace

std::size_t encode(const Telemetry& msg, char* out, std::size_t capacity) {
  json::Writer w(out, capacity);
  w.begin_object().key("v").integer(kProtocolVersion).key("ts").integer(msg.ts);
  w.key("seq").integer(msg.seq).key("metrics").entries(msg.metrics).end_object();
  return finish(w);
}

std::size_t encode(const StateReport& msg, char* out, std::size_t capacity) {
  json::Writer w(out, capacity);
  w.begin_object().key("v").integer(kProtocolVersion).key("ts").integer(msg.ts);
  w.key("values").entries(msg.values).end_object();
  return finish(w);
}

std::size_t encode(const Event& msg, char* out, std::size_t capacity) {
  json::Writer w(out, capacity);
  w.begin_object().key("v").integer(kProtocolVersion).key("ts").integer(msg.ts);
  w.key("kind").text(wire_name(msg.kind)).key("data").entries(msg.data).end_object();
  return finish(w);
}

std::size_t encode(const Status& msg, char* out, std::size_t capacity) {
  json::Writer w(out, capacity);
  if (!msg.online && !msg.ts) {
    if (capacity < kWillPayload.size()) return 0;
    kWillPayload.copy(out, kWillPayload.size());
    return kWillPayload.size();
  }
  w.begin_object().key("v").integer(kProtocolVersion);
  w.key("state").text(msg.online ? "online" : "offline").key("ts");
  if (msg.ts) {
    w.integer(*msg.ts);
  } else {
    w.null();
  }
  if (msg.kind) w.key("kind").text(wire_name(*msg.kind));
  if (msg.firmware) w.key("firmware").text(*msg.firmware);
  w.end_object();
  return finish(w);
}

std::size_t encode(const Ack& msg, char* out, std::size_t capacity) {
  json::Writer w(out, capacity);
  w.begin_object().key("v").integer(kProtocolVersion).key("id").text(msg.id);
  w.key("status").text(wire_name(msg.status));
  if (msg.result) w.key("result").entries(*msg.result);
  if (msg.error) w.key("error").text(*msg.error);
  w.end_object();
  return finish(w);
}

std::size_t encode(const DeviceMessage& msg, char* out, std::size_t capacity) {
  return std::visit([&](const auto& m) { return encode(m, out, capacity); }, msg);
}

std::size_t encode_command(const Command& cmd, char* out, std::size_t capacity) {
  json::Writer w(out, capacity);
  w.begin_object().key("v").integer(kProtocolVersion).key("id").text(cmd.id);
  w.key("name").text(cmd.name).key("params").entries(cmd.params);
  w.key("expires_at").integer(cmd.expires_at).end_object();
  return finish(w);
}

}  // namespace bellhop

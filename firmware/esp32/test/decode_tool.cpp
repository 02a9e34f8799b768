// Decodes payloads given on stdin with the C++ core, one JSON line per input
// line, for the differential check against the Python codec (differential.py).
//
// In:  {"mode": "device" | "command", "topic": "...", "hotel_id": "...", "payload_b64": "..."}
// Out: {"reason": "none" | "<reject code>", "message": <normalised message> | null}
#define DOCTEST_CONFIG_DISABLE
#include <iostream>
#include <string>

#include "bellhop/codec.hpp"
#include "message_json.hpp"
#include "vector_files.hpp"

int main() {
  using bellhop::test::Json;
  bellhop::Decoder decoder;
  std::string line;
  while (std::getline(std::cin, line)) {
    const Json in = Json::parse(line);
    const std::string payload = bellhop::test::base64_decode(in.at("payload_b64").get<std::string>());
    Json out = {{"reason", "none"}, {"message", nullptr}};
    bellhop::Reject reason;
    if (in.at("mode") == "command") {
      bellhop::Command cmd;
      reason = decoder.decode_command(payload, cmd);
      if (reason == bellhop::Reject::kNone) out["message"] = bellhop::test::json_of(cmd);
    } else {
      bellhop::Decoded decoded;
      const std::string topic = in.at("topic").get<std::string>();
      reason = decoder.decode(topic, payload, in.at("hotel_id").get<std::string>(), decoded);
      if (reason == bellhop::Reject::kNone) {
        out["message"] = std::visit([](const auto& m) { return bellhop::test::json_of(m); }, decoded.message);
        out["message"]["device_id"] = std::string(decoded.device_id);
      }
    }
    out["reason"] = bellhop::reject_name(reason);
    std::cout << out.dump(-1, ' ', false, Json::error_handler_t::replace) << '\n';
  }
  return 0;
}

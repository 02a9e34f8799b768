// Decoded messages as JSON, in the normalised form of the shared vectors.
#pragma once

#include <string>

#include "bellhop/messages.hpp"
#include "vector_files.hpp"

namespace bellhop::test {

inline Json json_of(const Telemetry& m) {
  return {{"channel", "telemetry"}, {"ts", m.ts}, {"seq", m.seq}, {"metrics", json_of(m.metrics)}};
}
inline Json json_of(const StateReport& m) {
  return {{"channel", "state"}, {"ts", m.ts}, {"values", json_of(m.values)}};
}
inline Json json_of(const Event& m) {
  return {{"channel", "event"},
          {"ts", m.ts},
          {"kind", std::string(wire_name(m.kind))},
          {"data", json_of(m.data)}};
}
inline Json json_of(const Status& m) {
  Json out = {{"channel", "status"}, {"online", m.online}};
  out["ts"] = m.ts ? Json(*m.ts) : Json(nullptr);
  out["kind"] = m.kind ? Json(std::string(wire_name(*m.kind))) : Json(nullptr);
  out["firmware"] = m.firmware ? Json(std::string(*m.firmware)) : Json(nullptr);
  return out;
}
inline Json json_of(const Ack& m) {
  Json out = {{"channel", "ack"}, {"id", std::string(m.id)}, {"status", std::string(wire_name(m.status))}};
  out["result"] = m.result ? json_of(*m.result) : Json(nullptr);
  out["error"] = m.error ? Json(std::string(*m.error)) : Json(nullptr);
  return out;
}

inline Json json_of(const Command& m) {
  return {{"id", std::string(m.id)},
          {"name", std::string(m.name)},
          {"params", json_of(m.params)},
          {"expires_at", m.expires_at}};
}

}  // namespace bellhop::test

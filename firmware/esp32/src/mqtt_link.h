// MQTT 3.1.1 over TLS to the hotel's broker: connect with the Last Will,
// subscribe, publish at QoS 0/1, and hand received messages to the loop.
#pragma once

#include <MQTT.h>
#include <WiFiClientSecure.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bellhop/codec.hpp"
#include "bellhop/topics.hpp"

#ifndef BELLHOP_MQTT_BUFFER_BYTES
#define BELLHOP_MQTT_BUFFER_BYTES 4608
#endif

// A received message, copied out of the client's buffer.
struct Inbound {
  char topic[bellhop::kMaxTopicBytes] = {};
  char payload[bellhop::kMaxPayloadBytes] = {};
  size_t size = 0;
  std::string_view payload_view() const { return {payload, size}; }
};

struct MqttCredentials {
  const char* client_id;
  const char* username;
  const char* password;
};

class MqttLink {
 public:
  MqttLink();
  void begin(const char* host, uint16_t port, const char* ca_pem);
  // Blocks for at most the TLS handshake and the CONNACK timeouts.
  bool connect(const MqttCredentials& credentials, const char* will_topic, const char* will_payload);
  bool subscribe(const char* topic);
  bool publish(const char* topic, std::string_view payload, uint8_t qos, bool retained);
  // Reads the socket and keeps the session alive; false once it is gone.
  bool poll();
  bool connected();
  void disconnect();
  // The oldest message received and not yet taken.
  bool take(Inbound& out);
  uint32_t dropped() const { return dropped_; }

 private:
  static void on_message(MQTTClient* client, char topic[], char bytes[], int length);

  static constexpr size_t kQueueDepth = 2;
  static MqttLink* instance_;

  WiFiClientSecure net_;
  MQTTClient client_;
  // Messages wait here: the client's callback runs inside its read loop,
  // where publishing (the ack) would re-enter it.
  Inbound queue_[kQueueDepth];
  size_t head_ = 0;
  size_t count_ = 0;
  uint32_t dropped_ = 0;
};

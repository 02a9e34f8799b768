#include "mqtt_link.h"

#include <cstring>

namespace {

constexpr uint32_t kHandshakeTimeoutS = 10;
constexpr int kKeepAliveS = 30;
constexpr int kCommandTimeoutMs = 5000;  // CONNACK, SUBACK, PUBACK

}  // namespace

MqttLink* MqttLink::instance_ = nullptr;

MqttLink::MqttLink() : client_(BELLHOP_MQTT_BUFFER_BYTES) { instance_ = this; }

void MqttLink::begin(const char* host, uint16_t port, const char* ca_pem) {
  net_.setCACert(ca_pem);
  net_.setHandshakeTimeout(kHandshakeTimeoutS);
  client_.begin(host, port, net_);
  // A persistent session: the broker keeps QoS 1 commands for a short outage;
  // the command guard refuses the ones that expired meanwhile.
  client_.setOptions(kKeepAliveS, /*cleanSession=*/false, kCommandTimeoutMs);
  client_.onMessageAdvanced(&MqttLink::on_message);
}

bool MqttLink::connect(const MqttCredentials& c, const char* will_topic, const char* will_payload) {
  client_.setWill(will_topic, will_payload, /*retained=*/true, /*qos=*/1);
  if (client_.connect(c.client_id, c.username, c.password)) return true;
  Serial.printf("mqtt: connect failed (error %d, return code %d)\n", static_cast<int>(client_.lastError()),
                static_cast<int>(client_.returnCode()));
  return false;
}

bool MqttLink::subscribe(const char* topic) { return client_.subscribe(topic, 1); }

bool MqttLink::publish(const char* topic, std::string_view payload, uint8_t qos, bool retained) {
  return client_.publish(topic, payload.data(), static_cast<int>(payload.size()), retained, qos);
}

bool MqttLink::poll() { return client_.loop(); }

bool MqttLink::connected() { return client_.connected(); }

void MqttLink::disconnect() { client_.disconnect(); }

bool MqttLink::take(Inbound& out) {
  if (count_ == 0) return false;
  out = queue_[head_];
  head_ = (head_ + 1) % kQueueDepth;
  --count_;
  return true;
}

void MqttLink::on_message(MQTTClient*, char topic[], char bytes[], int length) {
  MqttLink& self = *instance_;
  const size_t topic_size = std::strlen(topic);
  if (self.count_ == kQueueDepth || length < 0 || static_cast<size_t>(length) > bellhop::kMaxPayloadBytes ||
      topic_size >= bellhop::kMaxTopicBytes) {
    // The edge retries a command it gets no ack for, with the same id.
    ++self.dropped_;
    return;
  }
  Inbound& slot = self.queue_[(self.head_ + self.count_) % kQueueDepth];
  std::memcpy(slot.topic, topic, topic_size + 1);
  std::memcpy(slot.payload, bytes, static_cast<size_t>(length));
  slot.size = static_cast<size_t>(length);
  ++self.count_;
}

#include "bellhop/topics.hpp"

namespace bellhop {
namespace {

bool alnum(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// First character alphanumeric, the rest alphanumeric or in `extra`.
bool matches(std::string_view s, std::size_t max_chars, std::string_view extra) {
  if (s.empty() || s.size() > max_chars || !alnum(s.front())) return false;
  for (char c : s.substr(1)) {
    if (!alnum(c) && extra.find(c) == std::string_view::npos) return false;
  }
  return true;
}

}  // namespace

void TopicBuffer::assign(std::initializer_list<std::string_view> parts) {
  size_ = 0;
  for (std::string_view part : parts) {
    for (char ch : part) {
      if (size_ + 1 < data_.size()) data_[size_++] = ch;
    }
  }
  data_[size_] = '\0';
}

bool valid_id(std::string_view id) { return matches(id, kMaxIdChars, "_-"); }
bool valid_command_id(std::string_view id) { return matches(id, kMaxIdChars, "._:-"); }
bool valid_firmware(std::string_view version) { return matches(version, 32, "._+-"); }

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 32 || name.front() < 'a' || name.front() > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

Reject build_topic(std::string_view hotel_id, std::string_view device_id, Channel channel,
                   TopicBuffer& out) {
  if (!valid_id(hotel_id) || !valid_id(device_id)) return Reject::kBadId;
  out.assign({"hotel/", hotel_id, "/device/", device_id, "/", wire_name(channel)});
  return Reject::kNone;
}

Reject build_broadcast_topic(std::string_view hotel_id, TopicBuffer& out) {
  if (!valid_id(hotel_id)) return Reject::kBadId;
  out.assign({"hotel/", hotel_id, "/broadcast/cmd"});
  return Reject::kNone;
}

Reject build_subscriptions(std::string_view hotel_id,
                           std::array<TopicBuffer, kDeviceChannelCount>& out) {
  if (!valid_id(hotel_id)) return Reject::kBadId;
  for (std::size_t i = 0; i < kDeviceChannelCount; ++i) {
    out[i].assign({"hotel/", hotel_id, "/device/+/", wire_name(kDeviceChannels[i])});
  }
  return Reject::kNone;
}

Reject parse_topic(std::string_view topic, std::string_view hotel_id, Topic& out) {
  std::string_view parts[5];
  std::size_t count = 0;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = topic.find('/', start);
    const std::string_view part = topic.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (count == 5) return Reject::kBadTopic;
    parts[count++] = part;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (count != 5 || parts[0] != "hotel" || parts[2] != "device") return Reject::kBadTopic;
  if (parts[1] != hotel_id) return Reject::kForeignHotel;
  if (!valid_id(parts[3])) return Reject::kBadId;
  const std::optional<Channel> channel = channel_from(parts[4]);
  if (!channel) return Reject::kUnknownChannel;
  out = Topic{parts[1], parts[3], *channel};
  return Reject::kNone;
}

}  // namespace bellhop

// Typed messages for tidal's control and data planes, and their wire encoding.
//
// A message type is a plain struct plus one macro line, in the struct's own namespace:
//
//   struct AssignRole { std::string role; int64_t policy_version = 0; };
//   TIDAL_MESSAGE(AssignRole, role, policy_version)
//
// The macro gives the struct MessagePack (de)serialization through nlohmann::json (fields missing
// on the wire keep the struct's defaults, so adding a field stays compatible) and a wire type
// name, the struct name as written ("AssignRole"). Needs at least one field and a default
// constructor.
//
// Wire format (ZeroMQ multipart), after the routing-identity frame a ROUTER adds or strips:
//   frame 0  header, MessagePack of MessageHeader (type, id, reply_to, sender, frames, version)
//   frame 1  body, MessagePack of the struct
//   frame 2.. header.frames raw binary frames (tensor bytes), sent as-is and never re-encoded;
//            the body describes them (TensorSpec: name, dtype, shape, frame index).
// DecodeFrames() checks all of it and returns InvalidArgument naming what is wrong; it never
// throws and never trusts a length it was not given.
//
// Threads: everything here is plain data; Payload is immutable and may be shared across threads.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define TIDAL_MESSAGE(Type, ...)                                              \
  NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Type, __VA_ARGS__)          \
  [[maybe_unused]] inline constexpr std::string_view TidalMessageName(const Type*) { \
    return #Type;                                                             \
  }

namespace tidal {

// Bumped when the header layout changes incompatibly; a peer with another version is rejected.
inline constexpr int kWireVersion = 1;

// Immutable bytes of one frame. Copies share the bytes; `owner` keeps them alive, so a tensor or
// a received ZeroMQ buffer can travel without a copy.
class Payload {
 public:
  Payload() = default;
  Payload(std::shared_ptr<const void> owner, const void* data, size_t size)
      : owner_(std::move(owner)), data_(static_cast<const std::byte*>(data)), size_(size) {}
  static Payload Copy(const void* data, size_t size);
  static Payload FromString(std::string bytes);
  static Payload FromBytes(std::vector<uint8_t> bytes);

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

struct MessageHeader {
  int version = kWireVersion;
  std::string type;        // TidalMessageName of the body's struct
  uint64_t id = 0;         // unique per sending endpoint, > 0
  uint64_t reply_to = 0;   // id of the request this answers; 0 when not a reply
  std::string sender;      // the sending endpoint's name (a worker's routing identity)
  uint32_t frames = 0;     // raw frames after the body
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MessageHeader, version, type, id, reply_to, sender,
                                                frames)

// Describes one raw frame inside a body. dtype uses torch names: float32, bfloat16, int64, ...
struct TensorSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint32_t frame = 0;  // index into Envelope::frames
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(TensorSpec, name, dtype, shape, frame)

template <class T>
concept MessageType = std::default_initializable<T> && requires(const T* p, nlohmann::json& j) {
  { TidalMessageName(p) } -> std::convertible_to<std::string_view>;
  j = *p;
};

template <MessageType T>
constexpr std::string_view MessageName() {
  return TidalMessageName(static_cast<const T*>(nullptr));
}

// One decoded, received message.
struct Envelope {
  std::string peer;  // who sent it: the worker's identity at a Router, the Router's name at a Dealer
  MessageHeader header;
  nlohmann::json body;          // decoded MessagePack body
  std::vector<Payload> frames;  // raw frames, as received

  const std::string& type() const { return header.type; }
  template <MessageType T>
  bool Is() const { return header.type == MessageName<T>(); }

  // Converts the body; InvalidArgument (naming peer, type and the field problem) when the message
  // is of another type or a field has the wrong type.
  template <MessageType T>
  absl::StatusOr<T> As() const {
    if (!Is<T>()) {
      return absl::InvalidArgumentError(absl::StrCat("message from '", peer, "': expected type ",
                                                     std::string(MessageName<T>()), ", got ",
                                                     header.type));
    }
    try {
      return body.get<T>();
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("message ", header.type, " from '", peer,
                                                     "': bad body: ", e.what()));
    }
  }
};

// A message ready to send (type name + body), built from any MessageType.
struct OutMessage {
  std::string type;
  nlohmann::json body;
  std::vector<Payload> frames;
};

template <MessageType T>
OutMessage MakeOut(const T& msg, std::vector<Payload> frames = {}) {
  return OutMessage{std::string(MessageName<T>()), nlohmann::json(msg), std::move(frames)};
}

// A message field of enum type travels as its name. Decoding: `parse` maps a name to the value
// (std::optional<E>); any other JSON throws nlohmann::json::type_error, which Envelope::As turns
// into InvalidArgument, so a malformed value is refused rather than read as some default.
template <class E, class Parse>
void EnumFromName(const nlohmann::json& j, E& out, Parse&& parse, const char* what) {
  if (!j.is_string()) {
    throw nlohmann::json::type_error::create(
        302, absl::StrCat(what, " must be a string, got ", j.type_name()), &j);
  }
  const std::string& name = j.get_ref<const std::string&>();
  std::optional<E> value = parse(name);
  if (!value) throw nlohmann::json::type_error::create(302, absl::StrCat("unknown ", what, " '", name, "'"), &j);
  out = *value;
}

// header.frames is set from out.frames; returns [header, body, frames...].
std::vector<Payload> EncodeFrames(MessageHeader header, const OutMessage& out);
// Inverse of EncodeFrames (frames exclude the routing identity). Envelope::peer is left empty.
absl::StatusOr<Envelope> DecodeFrames(std::vector<Payload> frames);

// ---- Basic message types -------------------------------------------------------------------

// First message from a worker. The Router also tracks peers without it (any message counts).
struct Register {
  std::string role;   // "rollout", "train", ...
  int rank = -1;
  int64_t pid = 0;
  std::string host;
  nlohmann::json info = nlohmann::json::object();  // free-form (devices, versions, ...)
};
TIDAL_MESSAGE(Register, role, rank, pid, host, info)

// Sent by Dealers every heartbeat interval and echoed by the Router; the messaging layer consumes
// these itself (they never reach Receive()).
struct Heartbeat {
  uint64_t seq = 0;
  int64_t sent_unix_ms = 0;
};
TIDAL_MESSAGE(Heartbeat, seq, sent_unix_ms)

struct Ack {
  std::string detail;
};
TIDAL_MESSAGE(Ack, detail)

// A failed request. Request() turns an Error reply into a non-OK status with this code/message.
struct Error {
  int code = static_cast<int>(absl::StatusCode::kUnknown);  // absl::StatusCode
  std::string message;
};
TIDAL_MESSAGE(Error, code, message)

Error ErrorFromStatus(const absl::Status& status);
absl::Status StatusFromError(const Error& error);

}  // namespace tidal

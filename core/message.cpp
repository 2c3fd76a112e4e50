#include "core/message.h"

#include <cstring>

namespace tidal {
namespace {

Payload PayloadOfBytes(std::vector<uint8_t> bytes) { return Payload::FromBytes(std::move(bytes)); }

// nlohmann's MessagePack reader recurses once per nesting level, so a few hundred kB of nested
// array markers from a hostile or corrupt peer would overflow the stack. This SAX pass rejects
// deep nesting before the real parse.
constexpr int kMaxNesting = 64;

class NestingCheck : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return ++depth_ <= kMaxNesting; }
  bool key(string_t&) override { return true; }
  bool end_object() override { --depth_; return true; }
  bool start_array(std::size_t) override { return ++depth_ <= kMaxNesting; }
  bool end_array() override { --depth_; return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = e.what();
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  int depth_ = 0;
  std::string error_;
};

// Parses one MessagePack frame; `what` names the frame in the error.
absl::StatusOr<nlohmann::json> ParseMsgpack(const Payload& frame, std::string_view what) {
  const auto* p = reinterpret_cast<const uint8_t*>(frame.data());
  try {
    NestingCheck check;
    if (!nlohmann::json::sax_parse(p, p + frame.size(), &check,
                                   nlohmann::json::input_format_t::msgpack)) {
      if (!check.error().empty()) return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": ", check.error()));
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(what), ": nested deeper than ", kMaxNesting, " levels"));
    }
    return nlohmann::json::from_msgpack(p, p + frame.size());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": ", e.what()));
  }
}

}  // namespace

Payload Payload::Copy(const void* data, size_t size) {
  auto buf = std::shared_ptr<std::byte[]>(new std::byte[size > 0 ? size : 1]);
  if (size > 0) std::memcpy(buf.get(), data, size);
  const std::byte* p = buf.get();
  return Payload(std::shared_ptr<const void>(buf, p), p, size);
}

Payload Payload::FromString(std::string bytes) {
  auto s = std::make_shared<const std::string>(std::move(bytes));
  return Payload(s, s->data(), s->size());
}

Payload Payload::FromBytes(std::vector<uint8_t> bytes) {
  auto v = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  return Payload(v, v->data(), v->size());
}

std::vector<Payload> EncodeFrames(MessageHeader header, const OutMessage& out) {
  header.type = out.type;
  header.frames = static_cast<uint32_t>(out.frames.size());
  std::vector<Payload> frames;
  frames.reserve(2 + out.frames.size());
  frames.push_back(PayloadOfBytes(nlohmann::json::to_msgpack(nlohmann::json(header))));
  frames.push_back(PayloadOfBytes(nlohmann::json::to_msgpack(out.body)));
  frames.insert(frames.end(), out.frames.begin(), out.frames.end());
  return frames;
}

absl::StatusOr<Envelope> DecodeFrames(std::vector<Payload> frames) {
  if (frames.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("message has ", frames.size(), " frame(s); expected header and body"));
  }
  Envelope env;
  absl::StatusOr<nlohmann::json> header_json = ParseMsgpack(frames[0], "message header");
  if (!header_json.ok()) return header_json.status();
  try {
    const nlohmann::json& hj = *header_json;
    if (!hj.is_object()) {
      return absl::InvalidArgumentError("message header is not a MessagePack map");
    }
    env.header = hj.get<MessageHeader>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("message header: ", e.what()));
  }
  const MessageHeader& hdr = env.header;
  if (hdr.version != kWireVersion) {
    return absl::InvalidArgumentError(absl::StrCat("message from '", hdr.sender,
                                                   "': wire version ", hdr.version,
                                                   ", this build speaks ", kWireVersion));
  }
  if (hdr.type.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("message from '", hdr.sender, "': header has no type"));
  }
  if (hdr.frames != frames.size() - 2) {
    return absl::InvalidArgumentError(absl::StrCat("message ", hdr.type, " from '", hdr.sender,
                                                   "': header announces ", hdr.frames,
                                                   " raw frame(s), got ", frames.size() - 2));
  }
  absl::StatusOr<nlohmann::json> body =
      ParseMsgpack(frames[1], absl::StrCat("message ", hdr.type, " from '", hdr.sender, "': body"));
  if (!body.ok()) return body.status();
  env.body = *std::move(body);
  env.frames.assign(std::make_move_iterator(frames.begin() + 2),
                    std::make_move_iterator(frames.end()));
  return env;
}

Error ErrorFromStatus(const absl::Status& status) {
  return Error{static_cast<int>(status.code()), std::string(status.message())};
}

absl::Status StatusFromError(const Error& error) {
  int code = error.code;
  // An out-of-range code from a peer must not become an invalid StatusCode.
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<int>(absl::StatusCode::kUnknown);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), error.message);
}

}  // namespace tidal

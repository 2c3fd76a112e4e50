#include "scheduler/worker_auth.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace tidal::scheduler {
namespace {

absl::Status InitSodium() {
  if (sodium_init() < 0) return absl::InternalError("libsodium: sodium_init failed");
  return absl::OkStatus();
}

std::string Hex(const unsigned char* p, size_t n) {
  std::string out(2 * n + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), p, n);
  out.pop_back();
  return out;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  randombytes_buf(buf.data(), buf.size());
  return Hex(buf.data(), buf.size());
}

bool IsHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Mac(std::string_view secret, int rank, std::string_view nonce) {
  const std::string msg = absl::StrCat("tidal-register-v1|", rank, "|", std::string(nonce));
  unsigned char out[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(msg.data()), msg.size());
  crypto_auth_hmacsha256_final(&st, out);
  return Hex(out, sizeof(out));
}

bool SameBytes(std::string_view a, std::string_view b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool IsZ85Key(const std::string& k) { return k.size() == 40; }

}  // namespace

absl::StatusOr<RunCredentials> RunCredentials::Generate() {
  TIDAL_RETURN_IF_ERROR(InitSodium());
  if (!zmq_has("curve")) {
    return absl::FailedPreconditionError("this libzmq is built without CURVE (zmq_has(\"curve\") = 0)");
  }
  RunCredentials c;
  c.secret = RandomHex(32);
  for (CurveKeyPair* kp : {&c.server, &c.client}) {
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
      return absl::InternalError(absl::StrCat("zmq_curve_keypair: ", zmq_strerror(zmq_errno())));
    }
    kp->public_key = pub;
    kp->secret_key = sec;
  }
  return c;
}

absl::StatusOr<RunCredentials> RunCredentials::FromJson(std::string_view text, const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": credentials are not a JSON object"));
  RunCredentials c;
  auto field = [&](const char* key, std::string* out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_string()) return absl::InvalidArgumentError(absl::StrCat(source, ": `", key, "` must be a string"));
    *out = j[key].get<std::string>();
    return absl::OkStatus();
  };
  TIDAL_RETURN_IF_ERROR(field("secret", &c.secret));
  TIDAL_RETURN_IF_ERROR(field("server_public", &c.server.public_key));
  TIDAL_RETURN_IF_ERROR(field("server_secret", &c.server.secret_key));
  TIDAL_RETURN_IF_ERROR(field("client_public", &c.client.public_key));
  TIDAL_RETURN_IF_ERROR(field("client_secret", &c.client.secret_key));
  if (!IsZ85Key(c.server.public_key) || !IsZ85Key(c.client.public_key) || !IsZ85Key(c.client.secret_key)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": need server_public, client_public and client_secret as 40-character Z85 CURVE keys"));
  }
  if (!c.server.secret_key.empty() && !IsZ85Key(c.server.secret_key)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": server_secret must be a 40-character Z85 key"));
  }
  if (!c.secret.empty() && !IsHex(c.secret, 64)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": secret must be 64 lowercase hex characters"));
  }
  return c;
}

absl::StatusOr<RunCredentials> RunCredentials::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read credentials ", path, ": ", strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return FromJson(ss.str(), path);
}

std::string RunCredentials::ToJson(Scope scope) const {
  nlohmann::json j;
  j["server_public"] = server.public_key;
  j["client_public"] = client.public_key;
  j["client_secret"] = client.secret_key;
  if (scope == Scope::kController) j["server_secret"] = server.secret_key;
  if (scope != Scope::kWorker) j["secret"] = secret;
  return j.dump(2) + "\n";
}

absl::Status RunCredentials::Save(const std::string& path, Scope scope) const {
  const std::string text = ToJson(scope);
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", strerror(errno)));
  ::fchmod(fd, 0600);  // an existing file keeps its mode through O_CREAT
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("write ", tmp, ": ", strerror(errno)));
    }
    off += static_cast<size_t>(n);
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DeriveToken(std::string_view secret, int rank) {
  TIDAL_RETURN_IF_ERROR(InitSodium());
  if (!IsHex(secret, 64)) return absl::FailedPreconditionError("derived token: no run secret in the credentials");
  const std::string nonce = RandomHex(16);
  return absl::StrCat("d1.", rank, ".", nonce, ".", Mac(secret, rank, nonce));  // nonce: std::string
}

std::string WorkerAuth::Issue(int rank) {
  (void)InitSodium();
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    if (it->second == rank) {
      spent_.emplace(it->first, "revoked: a newer launch of this rank holds a newer token");
      it = outstanding_.erase(it);
    } else {
      ++it;
    }
  }
  std::string token = absl::StrCat("t1.", rank, ".", RandomHex(32));
  outstanding_.emplace(token, rank);
  return token;
}

absl::Status WorkerAuth::Check(int rank, std::string_view token) {
  absl::Status s = CheckOnce(rank, token);
  if (s.ok()) {
    ++accepted_;
  } else {
    ++refused_;
  }
  return s;
}

absl::Status WorkerAuth::CheckOnce(int rank, std::string_view token) {
  if (token.empty()) return absl::PermissionDeniedError("no registration token presented");
  if (auto it = spent_.find(token); it != spent_.end()) {
    return absl::PermissionDeniedError(absl::StrCat("token already used or revoked (", it->second, ")"));
  }
  std::vector<std::string> parts = absl::StrSplit(absl::string_view(token.data(), token.size()), '.');
  int token_rank = -1;
  if (parts.size() < 3 || !absl::SimpleAtoi(parts[1], &token_rank)) {
    return absl::PermissionDeniedError("malformed registration token");
  }
  if (token_rank != rank) {
    return absl::PermissionDeniedError(absl::StrCat("token is for rank ", token_rank, ", not rank ", rank));
  }
  if (parts[0] == "t1" && parts.size() == 3) {
    auto it = outstanding_.find(token);
    if (it == outstanding_.end()) return absl::PermissionDeniedError("unknown registration token");
    outstanding_.erase(it);
    spent_.emplace(std::string(token), "replay of an accepted registration");
    return absl::OkStatus();
  }
  if (parts[0] == "d1" && parts.size() == 4) {
    if (!IsHex(secret_, 64)) return absl::PermissionDeniedError("derived tokens are not accepted in this run");
    if (!IsHex(parts[2], 32) || !IsHex(parts[3], 64)) return absl::PermissionDeniedError("malformed derived token");
    if (!SameBytes(Mac(secret_, rank, parts[2]), parts[3])) {
      return absl::PermissionDeniedError("derived token: MAC does not match the run secret");
    }
    spent_.emplace(std::string(token), "replay of an accepted registration");
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("malformed registration token");
}

}  // namespace tidal::scheduler

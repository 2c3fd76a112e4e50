// Error handling for every tidal layer above tensor code.
//
// Contract: functions that can fail on user input, I/O, or a peer return absl::Status or
// absl::StatusOr<T>. Messages name the thing at fault (file, line, key, tensor, peer) so the CLI
// can print them as they are. Inside tensor code, preconditions use TORCH_CHECK instead.
// TIDAL_RETURN_IF_ERROR / TIDAL_ASSIGN_OR_RETURN propagate; they add nothing to the message.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#define TIDAL_STATUS_CONCAT_INNER_(a, b) a##b
#define TIDAL_STATUS_CONCAT_(a, b) TIDAL_STATUS_CONCAT_INNER_(a, b)

#define TIDAL_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::absl::Status tidal_status_ = (expr);           \
    if (!tidal_status_.ok()) return tidal_status_;   \
  } while (0)

#define TIDAL_ASSIGN_OR_RETURN(lhs, expr) \
  TIDAL_ASSIGN_OR_RETURN_IMPL_(TIDAL_STATUS_CONCAT_(tidal_statusor_, __LINE__), lhs, expr)

#define TIDAL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

namespace tidal {

// Internal invariant broken: carries file:line because it is our bug, not the user's.
#define TIDAL_INTERNAL_ERROR(...) \
  ::absl::InternalError(::absl::StrCat(__FILE__, ":", __LINE__, ": ", ::absl::StrFormat(__VA_ARGS__)))

// Maps a Status to the CLI exit code: 0 ok, 2 user error, 1 internal error.
inline int ExitCodeFor(const absl::Status& s) {
  if (s.ok()) return 0;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
      return 2;
    default:
      return 1;
  }
}

}  // namespace tidal

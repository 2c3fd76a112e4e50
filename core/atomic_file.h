// Whole-file replacement that readers never see torn: the data goes to `<path>.tmp`, is fsynced,
// and is renamed over `path` (atomic on POSIX file systems); the parent directory is fsynced so the
// rename survives a crash. Errors name the path and the failing call.
//
// Contract: not safe against two writers of the same path at once (they share `<path>.tmp`);
// callers own their files. No locking, no retries.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace tidal {

absl::Status WriteFileAtomic(const std::string& path, std::string_view data);

}  // namespace tidal

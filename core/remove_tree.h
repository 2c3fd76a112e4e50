// RemoveTree: recursive delete of a file or directory tree, with POSIX calls.
//
// Why not std::filesystem::remove_all: the torch wheel's libtorch.so exports its own copies of
// some std::filesystem symbols, and remove_all bound to that copy crashes with Debian 12's
// libstdc++ on non-empty directories (docs/ARCHITECTURE.md "Building"). Use this everywhere.
#pragma once

#include <string>

#include "core/status.h"

namespace tidal {

// Deletes `path` and everything under it (symlinks are removed, not followed). A missing path
// is not an error.
absl::Status RemoveTree(const std::string& path);

}  // namespace tidal

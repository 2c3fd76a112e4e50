// Test helpers: RemoveTree, and a fresh directory under /tmp removed (with its contents) by the
// destructor.
// Not std::filesystem::remove_all: the torch wheel's libtorch.so exports its own copy of it, which
// crashes with Debian 12's libstdc++ (see docs/ARCHITECTURE.md "Building").
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <string>

#include "core/remove_tree.h"

namespace tidal::testing_util {

// Deletes a directory tree (files first); missing paths are ignored.
inline void RemoveTree(const std::string& path) { (void)tidal::RemoveTree(path); }

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tidal_test_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { RemoveTree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tidal::testing_util

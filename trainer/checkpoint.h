// Sharded checkpoints: every rank writes its own tensors, rank 0 commits the whole directory
// atomically.
//
// Layout of a committed checkpoint directory `dir`:
//   rank-<r>.bin    rank r's tensors, raw bytes back to back (native little-endian)
//   rank-<r>.json   rank r's index: name, dtype, shape, offset, nbytes per tensor
//   meta.json       caller's state (trainer step, loader position, ...), written by rank 0
//   manifest.json   format, world size, and {bytes, crc32c} of every file above; written last
//
// Commit protocol: rank 0 creates `dir.partial/`; every rank writes its files there (fsync);
// barrier; rank 0 checksums the small files, takes each rank's .bin checksum from its index
// (computed while writing), writes manifest.json (temp + fsync + rename), fsyncs, removes any
// old `dir`, renames `dir.partial` -> `dir` and fsyncs the parent; barrier. A crash at any point
// leaves either the previous `dir` or the new one, never a torn one (a stale `dir.partial` is
// removed by the next save).
//
// Loading verifies every file a rank reads against the manifest (size and CRC-32C) and fails with
// kDataLoss naming the file; tensors are copied into the caller's tensors by name, checking shape
// and dtype. World size must match the one that saved; ReadShardedCheckpoint reads every rank's
// tensors (any world size) for re-partitioning (trainer/reshard.h).
//
// Both calls are collective over `comm`.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "core/communicator.h"
#include "core/status.h"

namespace tidal::trainer {

using NamedTensorList = std::vector<std::pair<std::string, at::Tensor>>;

absl::Status SaveShardedCheckpoint(const std::string& dir, Communicator& comm, const NamedTensorList& tensors,
                                   const std::string& meta);
// Fills `into` (in place) and returns meta.json's text.
absl::StatusOr<std::string> LoadShardedCheckpoint(const std::string& dir, Communicator& comm,
                                                  const NamedTensorList& into);

// Every rank's tensors (owned CPU copies, in each rank's saved order) and meta.json's text, each
// file verified against the manifest. Not collective: any process may call it, e.g. a device
// joining an elastic train group of another size.
struct ShardedCheckpointContents {
  int world_size = 0;
  std::vector<NamedTensorList> ranks;
  std::string meta;
};
absl::StatusOr<ShardedCheckpointContents> ReadShardedCheckpoint(const std::string& dir);

}  // namespace tidal::trainer

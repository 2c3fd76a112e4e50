// Checkpoint bookkeeping on the controller side: finding the checkpoint to resume from, writing
// the controller's state next to a committed trainer checkpoint, and keeping the newest K.
//
// Contract:
// - Called on the controller's event-loop thread. Directories are <ckpt_dir>/step-N.
// - controller_state.json is written only after every train rank reported its checkpoint done,
//   so a step-N with a controller_state.json is complete; resume only considers those.
// - The controller state is covered by the trainer's checksummed manifest: WriteControllerState
//   adds its {bytes, crc32c} to step-N/manifest.json, and a resume verifies it (a hand-edited or
//   damaged state is skipped like any other unusable checkpoint).
// - Every state carries the run's id. Pruning removes only this run's checkpoints, and a fresh
//   run refuses a checkpoint directory that holds checkpoints (CheckFreshCheckpointDir), so a
//   run never deletes, overwrites or adopts another run's checkpoints.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/status.h"

namespace tidal::scheduler {

struct ControllerState {
  int64_t step = 0;             // RL steps done
  int64_t version = 0;          // policy version published
  int64_t prompts_created = 0;  // the prompt ledger's position
  std::string run_id;           // the run that wrote it (NewRunId)
};

struct ResumePoint {
  std::string dir;  // <ckpt_dir>/step-N
  int64_t step = 0;
  std::string run_id;
};

// A fresh random run id (16 hex digits).
std::string NewRunId();

// The newest usable step-N checkpoint: it has the trainer's manifest.json (whose checksums the
// trainer verifies when it loads), the manifest lists controller_state.json with its size and
// CRC-32C, and that state is a JSON object whose integer "step" equals N (plus "version",
// "prompts_created" and a string "run_id"). A newer checkpoint that is not usable is
// skipped with a WARN naming the file and the reason, so a resume falls back to the newest valid
// one; nullopt when there is none.
absl::StatusOr<std::optional<ResumePoint>> FindResumePoint(const std::string& ckpt_dir);

// Writes <dir>/controller_state.json (atomically) and lists it in <dir>/manifest.json, which the
// trainer has committed before. Errors name the file.
absl::Status WriteControllerState(const std::string& dir, const ControllerState& state);

// Removes all but the newest `keep` step-N directories written by run `run_id`; other runs'
// checkpoints and incomplete ones are left alone.
void PruneCheckpoints(const std::string& ckpt_dir, int64_t keep, const std::string& run_id);

// For a run that starts fresh (no resume): an error naming the directory when `ckpt_dir` already
// holds step-N checkpoints (another run's), unless `overwrite`, which removes them.
absl::Status CheckFreshCheckpointDir(const std::string& ckpt_dir, bool overwrite);

}  // namespace tidal::scheduler

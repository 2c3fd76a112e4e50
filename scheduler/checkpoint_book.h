// Checkpoint bookkeeping on the controller side: finding the checkpoint to resume from, writing
// the controller's state next to a committed trainer checkpoint, and keeping the newest K.
//
// Contract:
// - Called on the controller's event-loop thread. Directories are <ckpt_dir>/step-N.
// - controller_state.json is written only after every train rank reported its checkpoint done,
//   so a step-N with a controller_state.json is complete; resume only considers those.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/status.h"

namespace tidal::scheduler {

struct ResumePoint {
  std::string dir;   // <ckpt_dir>/step-N
  int64_t step = 0;  // from its controller_state.json (N when the file has no "step")
};

// The newest usable step-N checkpoint: its controller_state.json is a JSON object whose integer
// "step" equals N (plus "version" and "prompts_created"), and it has the trainer's manifest.json
// (whose checksums the trainer verifies when it loads). A newer checkpoint that is not usable is
// skipped with a WARN naming the file and the reason, so a resume falls back to the newest valid
// one; nullopt when there is none.
absl::StatusOr<std::optional<ResumePoint>> FindResumePoint(const std::string& ckpt_dir);

void WriteControllerState(const std::string& dir, int64_t step, int64_t version,
                          int64_t prompts_created);

// Removes all but the newest `keep` step-N directories.
void PruneCheckpoints(const std::string& ckpt_dir, int64_t keep);

}  // namespace tidal::scheduler

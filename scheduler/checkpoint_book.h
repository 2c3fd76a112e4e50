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

// The newest step-N directory that holds a controller_state.json; nullopt when there is none.
// Fails when that file is not JSON.
absl::StatusOr<std::optional<ResumePoint>> FindResumePoint(const std::string& ckpt_dir);

void WriteControllerState(const std::string& dir, int64_t step, int64_t version,
                          int64_t prompts_created);

// Removes all but the newest `keep` step-N directories.
void PruneCheckpoints(const std::string& ckpt_dir, int64_t keep);

}  // namespace tidal::scheduler

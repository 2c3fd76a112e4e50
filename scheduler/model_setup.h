// The model a run trains, as the recipe describes it. Shared by every worker so train ranks and
// engines agree on one definition.
//
// Contract: pure functions of the recipe (and the files it names); any thread.
#pragma once

#include <memory>

#include "core/model.h"
#include "core/recipe.h"
#include "core/tokenizer.h"

namespace tidal::scheduler {

// model.path set: the checkpoint's config.json; otherwise model.arch + model.size, with the
// tokenizer's vocabulary when model.size.vocab is 0.
absl::StatusOr<ModelConfig> ModelConfigFromRecipe(const Recipe& recipe, const Tokenizer& tokenizer);

}  // namespace tidal::scheduler

// The KL estimators (Schulman's k1, k2, k3), shared by the recipe (algo.kl_estimator) and the
// trainer's losses, so that both name one type.
#pragma once

namespace tidal {

enum class KlEstimator { kK1, kK2, kK3 };

}  // namespace tidal

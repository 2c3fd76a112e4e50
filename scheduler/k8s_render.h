// `tidal k8s render`: Kubernetes manifests for a recipe (docs/scale-out.md). Not run against a
// cluster here; the manifests are checked against the Kubernetes schemas in tests
// (kubernetes-validate, a PyPI package that bundles them).
//
// What RenderK8s writes (one YAML document per file):
//   credentials-controller.yaml  Secret: the run's credentials (CURVE key pairs + run secret)
//   credentials-worker.yaml      Secret: the workers' copy (no server secret key; the run secret,
//                                so pods derive their one-time registration tokens)
//   recipe.yaml                  ConfigMap: the resolved recipe (launch: external, control.bind
//                                0.0.0.0, control.credentials pointing at the mounted Secret)
//   storage.yaml                 PersistentVolumeClaim (ReadWriteMany): the run directory, shared
//                                by controller and workers (recipe, checkpoints, logs, final/)
//   controller.yaml              Deployment (1 replica, Recreate) running `tidal run`
//   controller-service.yaml      Service: the control port (and metrics when on)
//   workers.yaml                 Job, completionMode Indexed: one pod per device slot; the pod
//                                index (JOB_COMPLETION_INDEX) is the rank; one GPU each
//                                (nvidia.com/gpu) for CUDA pools; restartPolicy OnFailure, so a
//                                dead worker's pod restarts and re-registers with a fresh token
// The recipe passed in must already carry the overrides K8sOverrides() lists (the CLI applies
// them through LoadRecipe, so they are validated like any recipe).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/recipe.h"
#include "scheduler/worker_auth.h"

namespace tidal::scheduler {

struct K8sOptions {
  std::string image = "tidal:latest";
  std::string k8s_namespace = "default";
  std::string storage = "50Gi";
  int control_port = 5555;
};

// DNS-1123 name derived from the recipe name ("quickstart_ci" -> "tidal-quickstart-ci").
std::string K8sName(const std::string& recipe_name);
// Recipe overrides that make a recipe run under Kubernetes (see the file comment).
std::vector<std::string> K8sOverrides(const std::string& recipe_name, const K8sOptions& options);
// File name -> YAML text.
absl::StatusOr<std::map<std::string, std::string>> RenderK8s(const Recipe& recipe, const RunCredentials& credentials,
                                                             const K8sOptions& options);

}  // namespace tidal::scheduler

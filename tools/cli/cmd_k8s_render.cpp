// `tidal k8s render RECIPE [-o DIR]`: writes Kubernetes manifests for the recipe (controller
// Deployment + Service, workers as an indexed Job with GPU requests, fresh CURVE keys and run
// secret as Secrets, the resolved recipe as a ConfigMap, a shared volume). See
// scheduler/k8s_render.h and docs/scale-out.md; not exercised against a live cluster here.
#include <sys/stat.h>

#include <fstream>
#include <iostream>

#include "core/recipe.h"
#include "scheduler/k8s_render.h"
#include "tools/cli/command.h"

namespace {

std::function<absl::Status()> Setup(CLI::App& sub) {
  struct Args {
    std::string recipe;
    std::vector<std::string> overrides;
    std::string out = "k8s";
    tidal::scheduler::K8sOptions options;
  };
  auto args = std::make_shared<Args>();
  sub.add_option("recipe", args->recipe, "Recipe YAML file")->required();
  sub.add_option("overrides", args->overrides, "Overrides: key.path=value");
  sub.add_option("-o,--out", args->out, "Directory for the manifests (created)");
  sub.add_option("--image", args->options.image, "Container image holding the tidal binary");
  sub.add_option("--namespace", args->options.k8s_namespace, "Kubernetes namespace");
  sub.add_option("--storage", args->options.storage, "Size of the shared run volume");
  sub.add_option("--control-port", args->options.control_port, "Control-plane port");
  return [args]() -> absl::Status {
    // Read the name first: the overrides that make the recipe Kubernetes-ready depend on it.
    TIDAL_ASSIGN_OR_RETURN(tidal::Recipe plain, tidal::LoadRecipe(args->recipe, args->overrides));
    std::vector<std::string> overrides = args->overrides;
    for (auto& o : tidal::scheduler::K8sOverrides(plain.name, args->options)) overrides.push_back(o);
    TIDAL_ASSIGN_OR_RETURN(tidal::Recipe recipe, tidal::LoadRecipe(args->recipe, overrides));
    TIDAL_ASSIGN_OR_RETURN(tidal::scheduler::RunCredentials creds, tidal::scheduler::RunCredentials::Generate());
    TIDAL_ASSIGN_OR_RETURN(auto files, tidal::scheduler::RenderK8s(recipe, creds, args->options));
    ::mkdir(args->out.c_str(), 0700);
    for (const auto& [name, text] : files) {
      const std::string path = args->out + "/" + name;
      std::ofstream out(path);
      out << text;
      if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
      std::cout << path << "\n";
    }
    std::cout << "apply with: kubectl apply -f " << args->out
              << "/  (the credentials-*.yaml files hold secrets: keep them out of version control)\n";
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("k8s render", "Write Kubernetes manifests for a recipe (controller, indexed worker Job, CURVE Secret)",
                  Setup);

}  // namespace

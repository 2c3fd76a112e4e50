#include "scheduler/k8s_render.h"

#include <yaml-cpp/yaml.h>

#include <cctype>

#include <nlohmann/json.hpp>

namespace tidal::scheduler {
namespace {

using json = nlohmann::json;

constexpr char kDataDir[] = "/data";
constexpr char kControllerCreds[] = "/etc/tidal/controller";
constexpr char kWorkerCreds[] = "/etc/tidal/worker";
constexpr char kRecipeDir[] = "/etc/tidal/recipe";

void Emit(YAML::Emitter& out, const json& j) {
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      out << YAML::Key << it.key() << YAML::Value;
      Emit(out, it.value());
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    out << YAML::BeginSeq;
    for (const json& e : j) Emit(out, e);
    out << YAML::EndSeq;
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s.find('\n') != std::string::npos) {
      out << YAML::Literal << s;
    } else {
      out << YAML::DoubleQuoted << s;  // never let YAML re-type "0600", "true", "1.0"
    }
  } else if (j.is_boolean()) {
    out << j.get<bool>();
  } else if (j.is_number_integer()) {
    out << j.get<int64_t>();
  } else if (j.is_number()) {
    out << j.get<double>();
  } else {
    out << YAML::Null;
  }
}

std::string ToYaml(const json& j) {
  YAML::Emitter out;
  Emit(out, j);
  return std::string(out.c_str()) + "\n";
}

json Meta(const std::string& name, const K8sOptions& o, const std::string& app, const std::string& component) {
  return {{"name", name},
          {"namespace", o.k8s_namespace},
          {"labels", {{"app.kubernetes.io/name", "tidal"}, {"app.kubernetes.io/instance", app},
                      {"app.kubernetes.io/component", component}}}};
}

}  // namespace

std::string K8sName(const std::string& recipe_name) {
  std::string out = "tidal-";
  for (char c : recipe_name) {
    out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.size() > 40) out.resize(40);  // room for "-controller-xxxxx" pod suffixes within 63
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::vector<std::string> K8sOverrides(const std::string& recipe_name, const K8sOptions& o) {
  const std::string app = K8sName(recipe_name);
  return {"launch=external",
          "control.bind=0.0.0.0",
          absl::StrCat("control.port=", o.control_port),
          absl::StrCat("control.advertise=", app, "-controller.", o.k8s_namespace, ".svc"),
          absl::StrCat("control.credentials=", kControllerCreds, "/credentials.json"),
          absl::StrCat("run_dir=", kDataDir, "/", app)};
}

absl::StatusOr<std::map<std::string, std::string>> RenderK8s(const Recipe& r, const RunCredentials& creds,
                                                             const K8sOptions& o) {
  if (r.launch != LaunchKind::kExternal) {
    return absl::InvalidArgumentError("k8s render: the recipe must carry K8sOverrides() (launch: external)");
  }
  const std::string app = K8sName(r.name);
  const bool cuda = r.pool.device_set.kind == DeviceSet::Kind::kCuda;
  const int workers = r.pool.device_set.size();
  const std::string service = app + "-controller";
  const std::string controller_addr = absl::StrCat("tcp://", service, ".", o.k8s_namespace, ".svc:", o.control_port);
  std::map<std::string, std::string> files;

  auto secret = [&](const std::string& name, RunCredentials::Scope scope, const char* component) {
    return json{{"apiVersion", "v1"},
                {"kind", "Secret"},
                {"metadata", Meta(name, o, app, component)},
                {"type", "Opaque"},
                {"stringData", {{"credentials.json", creds.ToJson(scope)}}}};
  };
  files["credentials-controller.yaml"] =
      ToYaml(secret(app + "-controller-credentials", RunCredentials::Scope::kController, "controller"));
  files["credentials-worker.yaml"] =
      ToYaml(secret(app + "-worker-credentials", RunCredentials::Scope::kWorkerDerive, "worker"));
  files["recipe.yaml"] = ToYaml({{"apiVersion", "v1"},
                                 {"kind", "ConfigMap"},
                                 {"metadata", Meta(app + "-recipe", o, app, "controller")},
                                 {"data", {{"recipe.yaml", RecipeToYaml(r)}}}});
  files["storage.yaml"] = ToYaml({{"apiVersion", "v1"},
                                  {"kind", "PersistentVolumeClaim"},
                                  {"metadata", Meta(app + "-data", o, app, "storage")},
                                  {"spec", {{"accessModes", json::array({"ReadWriteMany"})},
                                            {"resources", {{"requests", {{"storage", o.storage}}}}}}}});

  const json data_volume = {{"name", "data"}, {"persistentVolumeClaim", {{"claimName", app + "-data"}}}};
  const json data_mount = {{"name", "data"}, {"mountPath", kDataDir}};
  json ports = json::array({{{"name", "control"}, {"containerPort", o.control_port}}});
  json service_ports = json::array({{{"name", "control"}, {"port", o.control_port}, {"targetPort", "control"}}});
  if (r.metrics.port > 0) {
    ports.push_back({{"name", "metrics"}, {"containerPort", r.metrics.port}});
    service_ports.push_back({{"name", "metrics"}, {"port", r.metrics.port}, {"targetPort", "metrics"}});
  }
  const json selector = {{"app.kubernetes.io/instance", app}, {"app.kubernetes.io/component", "controller"}};
  json controller_pod = {
      {"metadata", {{"labels", {{"app.kubernetes.io/name", "tidal"}, {"app.kubernetes.io/instance", app},
                                {"app.kubernetes.io/component", "controller"}}}}},
      {"spec",
       {{"containers",
         json::array({{{"name", "controller"},
           {"image", o.image},
           {"command", json::array({"tidal", "run", std::string(kRecipeDir) + "/recipe.yaml", "--quiet"})},
           {"ports", ports},
           {"resources", {{"requests", {{"cpu", "2"}, {"memory", "4Gi"}}}}},
           {"volumeMounts",
            json::array({data_mount,
                         {{"name", "recipe"}, {"mountPath", kRecipeDir}, {"readOnly", true}},
                         {{"name", "credentials"}, {"mountPath", kControllerCreds}, {"readOnly", true}}})}}})},
        {"volumes",
         json::array({data_volume,
                      {{"name", "recipe"}, {"configMap", {{"name", app + "-recipe"}}}},
                      {{"name", "credentials"},
                       {"secret", {{"secretName", app + "-controller-credentials"}, {"defaultMode", 0400}}}}})}}}};
  files["controller.yaml"] = ToYaml({{"apiVersion", "apps/v1"},
                                     {"kind", "Deployment"},
                                     {"metadata", Meta(service, o, app, "controller")},
                                     {"spec", {{"replicas", 1},
                                               {"strategy", {{"type", "Recreate"}}},
                                               {"selector", {{"matchLabels", selector}}},
                                               {"template", controller_pod}}}});
  files["controller-service.yaml"] = ToYaml({{"apiVersion", "v1"},
                                             {"kind", "Service"},
                                             {"metadata", Meta(service, o, app, "controller")},
                                             {"spec", {{"selector", selector}, {"ports", service_ports}}}});

  json limits = cuda ? json{{"nvidia.com/gpu", 1}} : json{{"cpu", std::to_string(1)}};
  json worker_container = {
      {"name", "worker"},
      {"image", o.image},
      {"command", json::array({"tidal", "worker", "--controller", controller_addr, "--device", cuda ? "cuda:0" : "cpu:0",
                               "--credentials", std::string(kWorkerCreds) + "/credentials.json", "--heartbeat-ms",
                               std::to_string(r.control.heartbeat_ms), "--heartbeat-miss",
                               std::to_string(r.control.heartbeat_miss)})},
      {"env", json::array({{{"name", "OMP_NUM_THREADS"}, {"value", "1"}}})},  // the rank: JOB_COMPLETION_INDEX
      {"resources", {{"limits", limits}}},
      {"volumeMounts",
       json::array({data_mount, {{"name", "credentials"}, {"mountPath", kWorkerCreds}, {"readOnly", true}}})}};
  files["workers.yaml"] = ToYaml(
      {{"apiVersion", "batch/v1"},
       {"kind", "Job"},
       {"metadata", Meta(app + "-workers", o, app, "worker")},
       {"spec",
        {{"completionMode", "Indexed"},
         {"completions", workers},
         {"parallelism", workers},
         {"backoffLimit", 5 * workers},  // a worker may restart; the controller bounds it too
         {"template",
          {{"metadata", {{"labels", {{"app.kubernetes.io/name", "tidal"}, {"app.kubernetes.io/instance", app},
                                     {"app.kubernetes.io/component", "worker"}}}}},
           {"spec",
            {{"restartPolicy", "OnFailure"},
             {"containers", json::array({worker_container})},
             {"volumes",
              json::array({data_volume,
                           {{"name", "credentials"},
                            {"secret", {{"secretName", app + "-worker-credentials"}, {"defaultMode", 0400}}}}})}}}}}}}});
  return files;
}

}  // namespace tidal::scheduler

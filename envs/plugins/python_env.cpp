// libtidal_env_python.so: the bridge that runs an environment written in Python. It is an
// ordinary plugin (tidal/env_plugin.h) that embeds CPython; `env.plugin: python:FILE` loads it
// (envs/plugin_library.cpp) with create() config {"file": FILE, "args": <env.args>}, always in an
// env-worker process (env.isolate is forced), so the interpreter, its GIL and whatever the user's
// code does stay out of the rollout worker and the controller.
//
// The Python file defines (docs/plugins.md, example envs/examples/python_reward/):
//   init(args: dict) -> None                            optional: called once per instance;
//                                                       raise to reject bad env.args
//   reset(seed: int, split: str, args: dict) -> dict   the task: "prompt", "hidden", optional
//                                                       "messages", "reference"
//   score(hidden, response: str, args: dict) -> float | {"reward": float, "info": {...}}
//   step(task: dict, turn: str, args: dict) -> dict     optional (multi-turn): {"observation",
//                                                       "reward", "done", ...}; `task` is the dict
//                                                       reset returned, kept for the episode
//                                                       (mutate it to keep state). Without step,
//                                                       a turn is scored and ends the episode.
// A Python exception becomes the call's error message (its traceback, last 4000 characters).
//
// Threads: tidal may call different instances from different threads; every call holds the GIL.
#include <dlfcn.h>

#include <Python.h>

#include <mutex>
#include <string>

#include "tidal/env_plugin.h"

namespace {

// The Python half: loads the user's file and turns every call into (ok, text).
constexpr const char* kDriver = R"PY(
import importlib.util, json, os, sys, traceback

class Env:
    def __init__(self, config):
        cfg = json.loads(config)
        path = cfg.get("file")
        if not isinstance(path, str) or not path:
            raise ValueError("config needs 'file': the Python environment's path")
        self.args = cfg.get("args") or {}
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in sys.path:
            sys.path.insert(0, folder)  # the file may import its neighbours
        name = "tidal_env_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(path + ": cannot load as a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for fn in ("reset", "score"):
            if not callable(getattr(module, fn, None)):
                raise TypeError(path + ": defines no function " + fn + "(...)")
        self.module = module
        self.task = None
        if callable(getattr(module, "init", None)):
            module.init(self.args)  # validates env.args: an exception rejects the config

    def reset(self, seed, options):
        split = json.loads(options).get("split", "train")
        task = self.module.reset(seed, split, self.args)
        if not isinstance(task, dict):
            raise TypeError("reset() returned %s; expected a dict with 'prompt' and 'hidden'" % type(task).__name__)
        self.task = task
        return json.dumps(task)

    def _score(self, hidden, response):
        out = self.module.score(hidden, response, self.args)
        if isinstance(out, (bool, int, float)):
            return {"reward": float(out)}
        if isinstance(out, dict):
            return out
        raise TypeError("score() returned %s; expected a number or a dict with 'reward'" % type(out).__name__)

    def step(self, turn):
        if self.task is None:
            raise RuntimeError("step() before reset()")
        fn = getattr(self.module, "step", None)
        if fn is None:
            out = self._score(self.task.get("hidden"), turn)
            out["done"] = True
            return json.dumps(out)
        out = fn(self.task, turn, self.args)
        if not isinstance(out, dict):
            raise TypeError("step() returned %s; expected a dict with 'reward' and 'done'" % type(out).__name__)
        return json.dumps(out)

    def score(self, hidden, response):
        return json.dumps(self._score(json.loads(hidden), response))

def call(fn, *args):
    try:
        return (True, fn(*args))
    except BaseException:
        return (False, traceback.format_exc().rstrip()[-4000:])
)PY";

PyObject* g_env_class = nullptr;  // Env
PyObject* g_call = nullptr;       // call(fn, *args)
std::string g_init_error;

// Starts the interpreter once per process and leaves the GIL released.
bool EnsurePython() {
  static std::once_flag once;
  std::call_once(once, [] {
    // The bridge is dlopen'ed RTLD_LOCAL, which would hide libpython's symbols from the C
    // extension modules the interpreter loads later (json, math, ...): re-export them.
    Dl_info info;
    if (::dladdr(reinterpret_cast<void*>(&Py_InitializeEx), &info) != 0 && info.dli_fname) {
      ::dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    }
    Py_InitializeEx(0);  // 0: leave signal handling to tidal
    PyObject* globals = PyDict_New();
    PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
    PyObject* r = PyRun_String(kDriver, Py_file_input, globals, globals);
    if (r == nullptr) {
      PyErr_Print();
      g_init_error = "tidal python bridge: the driver failed to load (see stderr)";
    } else {
      Py_DECREF(r);
      g_env_class = PyDict_GetItemString(globals, "Env");
      g_call = PyDict_GetItemString(globals, "call");
      Py_XINCREF(g_env_class);
      Py_XINCREF(g_call);
    }
    Py_DECREF(globals);
    PyEval_SaveThread();
  });
  return g_env_class != nullptr && g_call != nullptr;
}

// Result of call(): ok flag and its text, or a bridge-level failure.
bool Unpack(PyObject* result, std::string* text) {
  if (result == nullptr) {
    PyErr_Clear();
    *text = "tidal python bridge: internal call failed";
    return false;
  }
  bool ok = false;
  if (PyTuple_Check(result) && PyTuple_Size(result) == 2) {
    ok = PyObject_IsTrue(PyTuple_GetItem(result, 0)) == 1;
    PyObject* s = PyTuple_GetItem(result, 1);
    Py_ssize_t n = 0;
    const char* data = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &n) : nullptr;
    if (data != nullptr) {
      text->assign(data, static_cast<size_t>(n));
    } else {
      PyErr_Clear();
      ok = false;
      *text = "tidal python bridge: the environment returned something that is not text";
    }
  } else {
    *text = "tidal python bridge: unexpected result";
  }
  Py_DECREF(result);
  return ok;
}

}  // namespace

struct tidal_env {
  PyObject* env = nullptr;
  std::string out;
};

namespace {

int Finish(tidal_env* e, PyObject* result, const char** out) {
  const bool ok = Unpack(result, &e->out);
  *out = e->out.c_str();
  return ok ? TIDAL_ENV_OK : TIDAL_ENV_ERROR;
}

int Create(const char* config, tidal_env** out_env, const char** out_error) {
  thread_local std::string error;
  if (!EnsurePython()) {
    *out_error = g_init_error.c_str();
    return TIDAL_ENV_ERROR;
  }
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* r = PyObject_CallFunction(g_call, "Os", g_env_class, config);
  int rc = TIDAL_ENV_ERROR;
  if (r != nullptr && PyTuple_Check(r) && PyTuple_Size(r) == 2 &&
      PyObject_IsTrue(PyTuple_GetItem(r, 0)) == 1) {
    auto* e = new tidal_env;
    e->env = PyTuple_GetItem(r, 1);
    Py_INCREF(e->env);
    Py_DECREF(r);
    *out_env = e;
    rc = TIDAL_ENV_OK;
  } else {
    Unpack(r, &error);
    *out_error = error.c_str();
  }
  PyGILState_Release(gil);
  return rc;
}

void Destroy(tidal_env* e) {
  if (e == nullptr) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  Py_XDECREF(e->env);
  PyGILState_Release(gil);
  delete e;
}

int Reset(tidal_env* e, uint64_t seed, const char* options, const char** out) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* method = PyObject_GetAttrString(e->env, "reset");
  int rc = Finish(e, PyObject_CallFunction(g_call, "OKs", method, static_cast<unsigned long long>(seed), options), out);
  Py_XDECREF(method);
  PyGILState_Release(gil);
  return rc;
}

int Step(tidal_env* e, const char* turn, const char** out) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* method = PyObject_GetAttrString(e->env, "step");
  int rc = Finish(e, PyObject_CallFunction(g_call, "Os", method, turn), out);
  Py_XDECREF(method);
  PyGILState_Release(gil);
  return rc;
}

int Score(tidal_env* e, const char* hidden, const char* response, const char** out) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* method = PyObject_GetAttrString(e->env, "score");
  int rc = Finish(e, PyObject_CallFunction(g_call, "Oss", method, hidden, response), out);
  Py_XDECREF(method);
  PyGILState_Release(gil);
  return rc;
}

const tidal_env_api kApi = {
    TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "python",
    "an environment written in Python (env.plugin: python:FILE)",
    Create, Destroy, Reset, Step, Score};

}  // namespace

extern "C" TIDAL_ENV_EXPORT const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }

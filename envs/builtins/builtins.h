// The built-in environments: each returns its static C ABI table (tidal/env_plugin.h), the same
// interface external plugins export, so the loader and env-worker treat both alike.
#pragma once

#include "tidal/env_plugin.h"

namespace tidal::envs::builtins {

const tidal_env_api* LetterCountApi();   // "count r in strawberry:" -> " 3"
const tidal_env_api* ArithmeticApi();    // "123+456=" -> " 579"
const tidal_env_api* CountdownApi();     // reach a target with given numbers, each once
const tidal_env_api* MathAnswerApi();    // GSM8K-style JSONL, final-answer verifier
const tidal_env_api* ToolCalcApi();      // multi-turn calculator tool use
const tidal_env_api* CodeExecApi();      // python program judged by hidden tests (sandbox)

}  // namespace tidal::envs::builtins

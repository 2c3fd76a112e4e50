# Helpers that keep each folder's CMakeLists to a few lines.
#
# tidal_library(NAME <target> DEPS <targets...> [INCLUDE_DIRS <dirs...>] [TORCH_PCH])
#   Globs the calling folder's *.cpp (and *.cu when TIDAL_CUDA) recursively, skipping
#   examples/, plugins/ (libraries of their own) and files ending in _main.cpp. Public include
#   root is the repo root, so code includes "core/status.h", "rollout/engine.h", ...
# tidal_test_suite(FOLDER <name> DEPS <targets...> [NEEDS_CLI])  (see below: *_gpu_test.cpp get the gpu label)
#   tests/<name>/*_test.cpp -> one executable tidal_<name>_tests, registered test by test.

if(CCACHE_PROGRAM)
  # Precompiled headers only hit ccache with these sloppiness settings.
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${CCACHE_PROGRAM})
endif()

function(tidal_library)
  cmake_parse_arguments(ARG "TORCH_PCH" "NAME" "DEPS;INCLUDE_DIRS" ${ARGN})
  file(GLOB_RECURSE _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  if(TIDAL_CUDA)
    file(GLOB_RECURSE _cu CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cu)
    list(APPEND _srcs ${_cu})
  endif()
  list(FILTER _srcs EXCLUDE REGEX "/examples/|/plugins/|_main\\.cpp$")
  if(NOT _srcs)
    # A folder with no sources yet: still a target, so dependents link the same names.
    add_library(${ARG_NAME} INTERFACE)
    target_include_directories(${ARG_NAME} INTERFACE ${PROJECT_SOURCE_DIR} ${ARG_INCLUDE_DIRS})
    target_link_libraries(${ARG_NAME} INTERFACE ${ARG_DEPS})
    return()
  endif()
  add_library(${ARG_NAME} SHARED ${_srcs})
  target_include_directories(${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR} ${ARG_INCLUDE_DIRS})
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS})
  target_compile_options(${ARG_NAME} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  if(TIDAL_CUDA)
    target_compile_definitions(${ARG_NAME} PUBLIC TIDAL_WITH_CUDA=1)
    set_target_properties(${ARG_NAME} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
  endif()
  if(ARG_TORCH_PCH)
    target_precompile_headers(${ARG_NAME} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:<ATen/ATen.h$<ANGLE-R>>)
  endif()
endfunction()

set(TIDAL_PYTHON "${PROJECT_SOURCE_DIR}/.venv/bin/python" CACHE STRING
    "Python with torch/transformers/tokenizers for reference and parity tests")

# One test executable from a list of sources, discovered test by test, with the given labels.
function(_tidal_test_executable _t _srcs _deps _labels _needs_cli)
  add_executable(${_t} ${_srcs})
  target_link_libraries(${_t} PRIVATE ${_deps} GTest::gtest GTest::gtest_main GTest::gmock)
  target_include_directories(${_t} PRIVATE ${PROJECT_SOURCE_DIR})
  # Tests find the CLI, fixtures and the venv's python through these.
  target_compile_definitions(${_t} PRIVATE
    TIDAL_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    TIDAL_BINARY_DIR="${PROJECT_BINARY_DIR}"
    TIDAL_BIN="$<TARGET_FILE:tidal>"
    TIDAL_PYTHON="${TIDAL_PYTHON}")
  if(_needs_cli)
    add_dependencies(${_t} tidal)  # end-to-end suites run the binary
  endif()
  gtest_discover_tests(${_t} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT 300 LABELS "${_labels}"
                       # ctest runs suites in parallel: one intra-op thread each avoids OpenMP
                       # oversubscription (seen: 0.3 s tests taking 18 s).
                       ENVIRONMENT "OMP_NUM_THREADS=1")
endfunction()

# tests/<folder>/*_test.cpp -> tidal_<folder>_tests (label <folder>);
# tests/<folder>/*_gpu_test.cpp -> tidal_<folder>_gpu_tests (labels gpu;<folder>): tests that need
# a CUDA device. They skip with a message where none is; tools/device_test.sh runs them (ctest -L gpu).
# tests/<folder>/*_slow_test.cpp -> tidal_<folder>_slow_tests (labels slow;<folder>): end-to-end
# checks with external programs (a real Prometheus server, headless Chromium). CI runs them; a
# quick local pass skips them with `ctest -LE slow`.
function(tidal_test_suite)
  cmake_parse_arguments(ARG "NEEDS_CLI" "FOLDER" "DEPS" ${ARGN})
  file(GLOB _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_FOLDER}/*_test.cpp)
  set(_gpu_srcs ${_srcs})
  set(_slow_srcs ${_srcs})
  list(FILTER _srcs EXCLUDE REGEX "_(gpu|slow)_test\\.cpp$")
  list(FILTER _gpu_srcs INCLUDE REGEX "_gpu_test\\.cpp$")
  list(FILTER _slow_srcs INCLUDE REGEX "_slow_test\\.cpp$")
  if(_srcs)
    _tidal_test_executable(tidal_${ARG_FOLDER}_tests "${_srcs}" "${ARG_DEPS}" "${ARG_FOLDER}"
                           "${ARG_NEEDS_CLI}")
  endif()
  if(_gpu_srcs)
    _tidal_test_executable(tidal_${ARG_FOLDER}_gpu_tests "${_gpu_srcs}" "${ARG_DEPS}"
                           "gpu;${ARG_FOLDER}" "${ARG_NEEDS_CLI}")
  endif()
  if(_slow_srcs)
    _tidal_test_executable(tidal_${ARG_FOLDER}_slow_tests "${_slow_srcs}" "${ARG_DEPS}"
                           "slow;${ARG_FOLDER}" "${ARG_NEEDS_CLI}")
  endif()
endfunction()

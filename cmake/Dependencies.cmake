# Finds every third-party dependency once; targets below link the imported targets.
# LibTorch comes from the torch==2.11.0 wheel in the project venv (tools/install_deps.sh);
# pass -DTorch_DIR or CMAKE_PREFIX_PATH to use another one.
find_package(Threads REQUIRED)

if(NOT Torch_DIR)
  foreach(py "${CMAKE_SOURCE_DIR}/.venv/bin/python" python3)
    execute_process(COMMAND ${py} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _torch_rc ERROR_QUIET)
    if(_torch_rc EQUAL 0 AND _torch_prefix)
      list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
      break()
    endif()
  endforeach()
endif()

if(TIDAL_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90a)   # H100 / H200
  endif()
  # CMake 3.25 knows no CUDA20 dialect for nvcc; kernels are C++17.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  # One CUDA runtime in the process: the shared one torch and NCCL use.
  set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include REQUIRED)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu REQUIRED)
  add_library(tidal_nccl INTERFACE)
  target_include_directories(tidal_nccl INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(tidal_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
endif()

# Caffe2's CMake config looks for CUDA itself when the wheel is a CUDA build; that needs the
# toolkit above (present on both the dev machine and the GPU machine).
# Naming the arch list keeps Caffe2 from probing for a GPU (there is none on the dev machine).
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "9.0a")
endif()
find_package(Torch REQUIRED)
# TORCH_LIBRARIES carries libtorch_cuda when present; tidal only needs it on the GPU machine but
# linking it everywhere keeps one build.
add_library(tidal_torch INTERFACE)
target_link_libraries(tidal_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(tidal_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})

# ZeroMQ: find the library directly (its pkg-config file names private deps that the GPU machine lacks).
find_path(ZMQ_INCLUDE_DIR zmq.h REQUIRED)
find_library(ZMQ_LIBRARY zmq REQUIRED)
find_path(CPPZMQ_INCLUDE_DIR zmq.hpp REQUIRED)
# libsodium (libzmq's CURVE backend): random run secrets and the HMAC of derived worker tokens.
find_path(SODIUM_INCLUDE_DIR sodium.h REQUIRED)
find_library(SODIUM_LIBRARY sodium REQUIRED)
add_library(tidal_zmq INTERFACE)
target_include_directories(tidal_zmq INTERFACE ${ZMQ_INCLUDE_DIR} ${CPPZMQ_INCLUDE_DIR} ${SODIUM_INCLUDE_DIR})
target_link_libraries(tidal_zmq INTERFACE ${ZMQ_LIBRARY} ${SODIUM_LIBRARY})

find_package(yaml-cpp REQUIRED)
if(NOT TARGET yaml-cpp::yaml-cpp)
  add_library(yaml-cpp::yaml-cpp ALIAS yaml-cpp)
endif()
find_package(absl REQUIRED)
find_package(nlohmann_json REQUIRED)
find_path(HTTPLIB_INCLUDE_DIR httplib.h REQUIRED)
find_library(HTTPLIB_LIBRARY NAMES cpp-httplib libcpp-httplib.so.0.11)
add_library(tidal_httplib INTERFACE)
target_include_directories(tidal_httplib INTERFACE ${HTTPLIB_INCLUDE_DIR})
if(HTTPLIB_LIBRARY)
  # Debian ships httplib compiled; the header then only declares. The library is built with
  # OpenSSL, zlib and Brotli support, which changes the layout of httplib::Client and friends, so
  # every translation unit must see the same CPPHTTPLIB_* defines: core/httplib.h sets them before
  # <httplib.h> (sources include core/httplib.h only). Checked here against cpp-httplib.pc, so a
  # library built otherwise stops the configure step instead of corrupting the heap at run time.
  target_link_libraries(tidal_httplib INTERFACE ${HTTPLIB_LIBRARY})
  target_compile_definitions(tidal_httplib INTERFACE CPPHTTPLIB_USE_POLL)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(HTTPLIB_PC QUIET cpp-httplib)
  endif()
endif()
if(HTTPLIB_LIBRARY AND HTTPLIB_PC_FOUND)
  set(_httplib_defs)
  foreach(_flag IN LISTS HTTPLIB_PC_CFLAGS_OTHER)
    if(_flag MATCHES "^-D(CPPHTTPLIB_[A-Z_]+)$")
      list(APPEND _httplib_defs ${CMAKE_MATCH_1})
    endif()
  endforeach()
  list(SORT _httplib_defs)
  file(STRINGS ${CMAKE_CURRENT_LIST_DIR}/../core/httplib.h _httplib_header REGEX "^#define CPPHTTPLIB_")
  set(_header_defs)
  foreach(_line IN LISTS _httplib_header)
    string(REGEX REPLACE "^#define (CPPHTTPLIB_[A-Z_]+).*" "\\1" _d "${_line}")
    list(APPEND _header_defs ${_d})
  endforeach()
  list(REMOVE_ITEM _header_defs CPPHTTPLIB_USE_POLL)  # a choice of tidal's, not of the library's build
  list(SORT _header_defs)
  if(NOT _httplib_defs STREQUAL _header_defs)
    message(FATAL_ERROR "cpp-httplib was built with '${_httplib_defs}' (cpp-httplib.pc) but core/httplib.h defines "
                        "'${_header_defs}': make core/httplib.h define exactly the library's CPPHTTPLIB_* macros")
  endif()
  find_package(OpenSSL QUIET)
  if(OpenSSL_FOUND)
    target_link_libraries(tidal_httplib INTERFACE OpenSSL::SSL OpenSSL::Crypto)
  endif()
elseif(HTTPLIB_LIBRARY)
  message(WARNING "cpp-httplib.pc not found (pkg-config): cannot check that core/httplib.h's CPPHTTPLIB_* "
                  "defines match the library's build")
endif()
find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
find_package(GTest)
# prometheus-cpp (Debian 12 prometheus-cpp-dev): only its core library (registry, metric types,
# text serializer); tidal serves the exposition over its own HTTP server. Found directly rather
# than through its CMake config, which also demands civetweb, zlib and curl for the pull/push
# parts tidal does not use (the GPU machine carries only the core .debs).
find_path(PROMETHEUS_CPP_INCLUDE_DIR prometheus/registry.h REQUIRED)
find_library(PROMETHEUS_CPP_CORE_LIBRARY NAMES prometheus-cpp-core libprometheus-cpp-core.so.1.0 REQUIRED)
add_library(tidal_prometheus INTERFACE)
target_include_directories(tidal_prometheus INTERFACE ${PROMETHEUS_CPP_INCLUDE_DIR})
target_link_libraries(tidal_prometheus INTERFACE ${PROMETHEUS_CPP_CORE_LIBRARY})

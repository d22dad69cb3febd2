# LLCUDA_* options and the settings of one target, read from targets.toml by factory/llcuda_factory.

set(LLCUDA_TARGET "" CACHE STRING "Backend target, a row of targets.toml (cpu, cc50, cc75, ...)")
set(
  LLCUDA_LLAMA_CPP_SOURCE
  "$ENV{LLCUDA_LLAMA_CPP_SOURCE}"
  CACHE PATH
  "llama.cpp tree to build when the llama.cpp/ submodule is not checked out"
)
option(LLCUDA_CCACHE "Compile through ccache when it is installed" ON)
set(
  LLCUDA_CUDA_ARCHITECTURES_OVERRIDE
  ""
  CACHE STRING
  "Benchmark builds only: CUDA archs instead of the target row's, or 'llama.cpp-default' for ggml's own list"
)
set(
  LLCUDA_CUDA_VERSION_OVERRIDE
  ""
  CACHE STRING
  "Benchmark builds only: the CUDA toolkit version (MAJOR.MINOR) to build with instead of the target row's"
)

if(NOT LLCUDA_TARGET)
  message(FATAL_ERROR "LLCUDA_TARGET is not set: pass -DLLCUDA_TARGET=<target>, one of the rows of targets.toml")
endif()

find_package(Python 3.9 REQUIRED COMPONENTS Interpreter)

set(_llcuda_settings "${CMAKE_BINARY_DIR}/llcuda-target.cmake")
set(
  _llcuda_args
  configure
  --target
  "${LLCUDA_TARGET}"
  --binary-dir
  "${CMAKE_BINARY_DIR}"
  --out
  "${_llcuda_settings}"
)
if(LLCUDA_LLAMA_CPP_SOURCE)
  list(APPEND _llcuda_args --source "${LLCUDA_LLAMA_CPP_SOURCE}")
endif()
if(LLCUDA_CUDA_ARCHITECTURES_OVERRIDE)
  # a CMake list ("75;90-real") would become several arguments: hand it over comma-separated
  string(REPLACE ";" "," _llcuda_override "${LLCUDA_CUDA_ARCHITECTURES_OVERRIDE}")
  list(APPEND _llcuda_args --cuda-architectures "${_llcuda_override}")
endif()
if(LLCUDA_CUDA_VERSION_OVERRIDE)
  list(APPEND _llcuda_args --cuda-version "${LLCUDA_CUDA_VERSION_OVERRIDE}")
endif()
if(LLCUDA_SYSROOT_DIR) # nvcc compiles host code with the sysroot's g++ too (cmake/LLCUDAToolchain.cmake)
  list(APPEND _llcuda_args --host-cxx "${CMAKE_CXX_COMPILER}")
endif()
execute_process(
  COMMAND
    "${CMAKE_COMMAND}" -E env "PYTHONPATH=${PROJECT_SOURCE_DIR}/factory:$ENV{PYTHONPATH}" "${Python_EXECUTABLE}" -m
    llcuda_factory ${_llcuda_args}
  RESULT_VARIABLE _llcuda_rc
  ERROR_VARIABLE _llcuda_err
)
if(NOT _llcuda_rc EQUAL 0)
  message(FATAL_ERROR "llcuda: cannot configure target '${LLCUDA_TARGET}':\n${_llcuda_err}")
endif()
include("${_llcuda_settings}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/targets.toml")

message(STATUS "llcuda: target ${LLCUDA_TARGET} (${LLCUDA_TARGET_DESCRIPTION})")
message(STATUS "llcuda: llama.cpp ${LLCUDA_LLAMA_CPP_TAG} from ${LLCUDA_LLAMA_CPP_DIR}")

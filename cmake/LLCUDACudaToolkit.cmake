# The CUDA toolkit chosen (and checked) by ci/llcuda_factory/toolkit.py: see LLCUDA_CUDA_* in llcuda-target.cmake.

if(NOT LLCUDA_CUDA_ARCHITECTURES)
  return()
endif()

set(CMAKE_CUDA_COMPILER "${LLCUDA_CUDA_COMPILER}")
set(CMAKE_CUDA_HOST_COMPILER "${LLCUDA_CUDA_HOST_COMPILER}")
set(CMAKE_CUDA_ARCHITECTURES ${LLCUDA_CUDA_ARCHITECTURES})
set(CUDAToolkit_ROOT "${LLCUDA_CUDA_ROOT}")

# Debian's nvcc finds ptxas/fatbinary through PATH; put this toolkit's first, both for the compiler checks
# run now and, through the launcher, for every nvcc call of the build.
set(_llcuda_path "${LLCUDA_CUDA_BIN_DIR}:$ENV{PATH}")
set(ENV{PATH} "${_llcuda_path}")
if(LLCUDA_LAUNCHER)
  set(CMAKE_CUDA_COMPILER_LAUNCHER "${CMAKE_COMMAND}" -E env "PATH=${_llcuda_path}" ${LLCUDA_CCACHE_ENV}
      "${LLCUDA_CCACHE_PROGRAM}")
else()
  set(CMAKE_CUDA_COMPILER_LAUNCHER "${CMAKE_COMMAND}" -E env "PATH=${_llcuda_path}")
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
if(NOT CMAKE_CUDA_COMPILER_VERSION MATCHES "^${LLCUDA_CUDA_VERSION}")
  message(FATAL_ERROR "llcuda: expected CUDA ${LLCUDA_CUDA_VERSION} (${LLCUDA_CUDA_COMPILER}), "
                      "CMake found ${CMAKE_CUDA_COMPILER_VERSION}")
endif()
message(STATUS "llcuda: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, "
               "host compiler ${CMAKE_CUDA_HOST_COMPILER}")

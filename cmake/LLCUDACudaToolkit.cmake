# The CUDA toolkit chosen (and checked) by factory/llcuda_factory/toolkit.py: see LLCUDA_CUDA_* in llcuda-target.cmake.

if(NOT LLCUDA_CUDA_ARCHITECTURES)
  return()
endif()

set(CMAKE_CUDA_COMPILER "${LLCUDA_CUDA_COMPILER}")
set(CMAKE_CUDA_HOST_COMPILER "${LLCUDA_CUDA_HOST_COMPILER}")
set(CUDAToolkit_ROOT "${LLCUDA_CUDA_ROOT}")

# Debian's nvcc finds ptxas/fatbinary through PATH; put this toolkit's first, both for the compiler checks
# run now and, through the launcher, for every nvcc call of the build.
set(_llcuda_path "${LLCUDA_CUDA_BIN_DIR}:$ENV{PATH}")
set(ENV{PATH} "${_llcuda_path}")
if(LLCUDA_LAUNCHER)
  set(
    CMAKE_CUDA_COMPILER_LAUNCHER
    "${CMAKE_COMMAND}"
    -E
    env
    "PATH=${_llcuda_path}"
    ${LLCUDA_CCACHE_ENV}
    "${LLCUDA_CCACHE_PROGRAM}"
  )
else()
  set(CMAKE_CUDA_COMPILER_LAUNCHER "${CMAKE_COMMAND}" -E env "PATH=${_llcuda_path}")
endif()

if(NOT LLCUDA_CUDA_ARCHITECTURES_FROM_GGML)
  set(CMAKE_CUDA_ARCHITECTURES ${LLCUDA_CUDA_ARCHITECTURES})
  enable_language(CUDA)
  # A toolkit whose headers live in /usr/include (Debian's own 11.8): CMake drops that directory from the implicit
  # include dirs, so CUDA::cudart would add `-isystem=/usr/include` and break libstdc++'s `#include_next <math.h>`
  # ("math.h: No such file or directory"). Declaring the toolkit's include dirs implicit keeps them off the
  # command line; nvcc finds its headers by itself.
  list(APPEND CMAKE_CUDA_IMPLICIT_INCLUDE_DIRECTORIES ${CMAKE_CUDA_TOOLKIT_INCLUDE_DIRECTORIES})
endif()
# Benchmark build (LLCUDA_CUDA_ARCHITECTURES_OVERRIDE=llama.cpp-default): ggml-cuda enables CUDA itself and
# picks its own default arch list; enabling it here would first fix the archs to the compiler's default.
find_package(CUDAToolkit REQUIRED)
if(NOT CUDAToolkit_VERSION MATCHES "^${LLCUDA_CUDA_VERSION}")
  message(
    FATAL_ERROR
    "llcuda: expected CUDA ${LLCUDA_CUDA_VERSION} (${LLCUDA_CUDA_COMPILER}), "
    "CMake found ${CUDAToolkit_VERSION}"
  )
endif()
if(LLCUDA_CUDA_ARCHITECTURES_FROM_GGML)
  set(_llcuda_archs "llama.cpp's default list")
else()
  set(_llcuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
endif()
message(STATUS "llcuda: CUDA ${CUDAToolkit_VERSION}, archs ${_llcuda_archs}, host compiler ${CMAKE_CUDA_HOST_COMPILER}")

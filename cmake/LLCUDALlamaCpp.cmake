# llama.cpp and ggml, configured identically for every target but for the target's own row.

macro(llcuda_force name value)
  set(${name} ${value} CACHE STRING "set by llcuda (cmake/LLCUDALlamaCpp.cmake)" FORCE)
endmacro()

# Shared libraries with run-time backend loading: one wheel runs on any x86-64 CPU and still picks
# AVX2/AVX-512 kernels where the CPU has them; a CUDA backend that cannot load (no driver) is skipped.
llcuda_force(BUILD_SHARED_LIBS ON)
llcuda_force(GGML_NATIVE OFF)
llcuda_force(GGML_BACKEND_DL ON)
llcuda_force(GGML_CPU_ALL_VARIANTS ON)
# The base-build instruction sets are unused with run-time variants, but their defaults flip with
# $SOURCE_DATE_EPOCH (ggml/CMakeLists.txt, INS_ENB) and would make build_info.json depend on the environment
# and on a build directory's history: pin them.
foreach(
  _isa
  SSE42
  AVX
  AVX2
  BMI2
  FMA
  F16C
)
  llcuda_force(GGML_${_isa} OFF)
endforeach()
# OpenMP, as a stock build has it: without it ggml's own thread pools spin against each other when a process runs
# two models (speculative decoding), 50x slower on the 2 vCPUs of Colab and Kaggle. The sysroot's gcc-10 libgomp is
# linked, and the repair grafts it (factory/llcuda_factory/repair.py, which restores any RPATH entry into
# site-packages/nvidia that grafting drops); the audit checks the wheel carries and loads exactly one OpenMP runtime.
llcuda_force(GGML_OPENMP ON)
if(LLCUDA_CUDA_ARCHITECTURES)
  llcuda_force(GGML_CUDA ON)
else()
  llcuda_force(GGML_CUDA OFF)
endif()

# The RPC backend (libggml-rpc, loaded at run time) and its server tool, for models split across machines.
# Neither RDMA (on by itself when libibverbs is found) nor NCCL (default ON, linked when found) belongs in a
# portable wheel: both would link libraries the user's machine may not have.
llcuda_force(GGML_RPC ON)
llcuda_force(GGML_RPC_RDMA OFF)
llcuda_force(GGML_CUDA_NCCL OFF)

# As a subdirectory llama.cpp leaves server, tools and common off; nothing may touch the network.
llcuda_force(LLAMA_BUILD_COMMON ON)
llcuda_force(LLAMA_BUILD_TOOLS ON)
llcuda_force(LLAMA_BUILD_SERVER ON)
# Tests on for test-backend-ops only (`llcuda selftest`, which the factory's TOOLS name): the tree is
# EXCLUDE_FROM_ALL, so no other test is built, and none is installed.
llcuda_force(LLAMA_BUILD_TESTS ON)
llcuda_force(LLAMA_TESTS_INSTALL OFF)
# Examples on for llama-embedding only: the whole tree is EXCLUDE_FROM_ALL, so nothing else of it is built.
llcuda_force(LLAMA_BUILD_EXAMPLES ON)
llcuda_force(LLAMA_BUILD_APP OFF)
llcuda_force(LLAMA_BUILD_UI OFF)
llcuda_force(LLAMA_USE_PREBUILT_UI OFF)
llcuda_force(LLAMA_OPENSSL OFF)
llcuda_force(LLAMA_CURL OFF)
llcuda_force(LLAMA_BUILD_IS_DEV OFF)

# The source may be an sdist without .git: record the pinned release ourselves.
# A pin without a release tag (recorded as g<commit>) builds as number 0; the commit still identifies it.
if(LLCUDA_LLAMA_CPP_TAG MATCHES "^b([0-9]+)$")
  set(LLAMA_BUILD_NUMBER "${CMAKE_MATCH_1}")
else()
  set(LLAMA_BUILD_NUMBER 0)
endif()
string(SUBSTRING "${LLCUDA_LLAMA_CPP_COMMIT}" 0 7 LLAMA_BUILD_COMMIT)

# The target's own row (GGML_CUDA_FORCE_CUBLAS, GGML_CUDA_FA, ...).
foreach(_opt IN LISTS LLCUDA_TARGET_CMAKE_OPTIONS)
  string(REGEX MATCH "^([^=]+)=(.*)$" _ "${_opt}")
  llcuda_force(${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
endforeach()

add_subdirectory("${LLCUDA_LLAMA_CPP_DIR}" llama.cpp EXCLUDE_FROM_ALL)

# The glibc floor (manylinux_2_28): llama.cpp's vendored subprocess.h calls posix_spawn_file_actions_addchdir_np
# (glibc 2.29) when it sees glibc >= 2.29, as in the sysroot's 2.31. Its fork()+exec() path (the header's own
# switch) keeps the working-directory support and needs nothing newer. Every user of the header gets it.
if(TARGET sheredom)
  target_compile_definitions(sheredom INTERFACE SUBPROCESS_SPAWN_VIA_FORK=1)
endif()

# Build only what the wheel ships: LLCUDA_TOOLS comes from the factory (configure.TOOLS).
set(LLCUDA_BACKENDS ${GGML_AVAILABLE_BACKENDS})
add_custom_target(llcuda_payload ALL)
add_dependencies(llcuda_payload ${LLCUDA_TOOLS} ${LLCUDA_BACKENDS})

if(TARGET ggml-cuda)
  # cudart and cuBLAS come from NVIDIA's wheels: site-packages/nvidia/*/lib, two levels above bin/.
  foreach(_dir IN LISTS LLCUDA_CUDA_RPATH_DIRS)
    set_property(TARGET ggml-cuda APPEND PROPERTY INSTALL_RPATH "$ORIGIN/../../${_dir}")
  endforeach()
endif()

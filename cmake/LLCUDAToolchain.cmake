# The old-glibc toolchain, chosen before project() enables the languages: targets.toml's [toolchain] names the
# wheels' manylinux tag and the sysroot of ci/install-sysroot.sh, whose gcc/g++ wrappers compile and link every
# C, C++ and CUDA host file against glibc 2.31 and gcc-10's libstdc++. factory/llcuda_factory/toolchain.py checks
# it: a missing or half-made sysroot stops here, before any compile, with the command that installs it.

if(NOT Python_EXECUTABLE) # scikit-build-core passes it; a plain `cmake -S . -B build` finds one
  find_program(Python_EXECUTABLE NAMES python3 python REQUIRED)
endif()
set(_llcuda_toolchain "${CMAKE_BINARY_DIR}/llcuda-toolchain.cmake")
execute_process(
  COMMAND
    "${CMAKE_COMMAND}" -E env "PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/factory:$ENV{PYTHONPATH}" "${Python_EXECUTABLE}"
    -m llcuda_factory toolchain --cmake "${_llcuda_toolchain}"
  RESULT_VARIABLE _llcuda_rc
  ERROR_VARIABLE _llcuda_err
)
if(NOT _llcuda_rc EQUAL 0)
  string(STRIP "${_llcuda_err}" _llcuda_err)
  message(FATAL_ERROR "llcuda: ${_llcuda_err}")
endif()
include("${_llcuda_toolchain}")

if(LLCUDA_SYSROOT_DIR)
  set(CMAKE_C_COMPILER "${LLCUDA_SYSROOT_CC}")
  set(CMAKE_CXX_COMPILER "${LLCUDA_SYSROOT_CXX}")
  # ccache and CMake's checks see the wrappers as one compiler; their flags live inside them.
  message(STATUS "llcuda: ${LLCUDA_PLATFORM} toolchain in ${LLCUDA_SYSROOT_DIR}")
else()
  message(STATUS "llcuda: ${LLCUDA_PLATFORM} with the native compilers (LLCUDA_SYSROOT=none)")
endif()
# Every link fails on an undefined symbol, instead of a wheel failing at load time on an older system (an
# unversioned _dl_find_object from a static libgcc is the trap this catches).
# glibc 2.31 still keeps the pthread functions in libpthread (2.34 moved them into libc), and a CPU-variant module
# calls pthread_setaffinity_np without linking Threads::Threads: -pthread on every link.
foreach(_kind EXE SHARED MODULE)
  string(APPEND CMAKE_${_kind}_LINKER_FLAGS_INIT " -Wl,--no-undefined -pthread")
endforeach()

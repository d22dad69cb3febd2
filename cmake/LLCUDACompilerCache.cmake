# ccache for every compiler, with one base dir above the source and all build dirs, so that the CPU objects
# compiled for one target are hits for the next one. ggml's own GGML_CCACHE is turned off in favour of this.

set(LLCUDA_LAUNCHER "")
if(LLCUDA_CCACHE)
  find_program(LLCUDA_CCACHE_PROGRAM ccache)
  if(LLCUDA_CCACHE_PROGRAM)
    set(LLCUDA_CCACHE_ENV "CCACHE_BASEDIR=${LLCUDA_CCACHE_BASEDIR}" "CCACHE_NOHASHDIR=1")
    set(
      LLCUDA_LAUNCHER
      "${CMAKE_COMMAND}"
      -E
      env
      ${LLCUDA_CCACHE_ENV}
      "${LLCUDA_CCACHE_PROGRAM}"
    )
    set(CMAKE_C_COMPILER_LAUNCHER ${LLCUDA_LAUNCHER})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${LLCUDA_LAUNCHER})
    message(STATUS "llcuda: ccache ${LLCUDA_CCACHE_PROGRAM}, base dir ${LLCUDA_CCACHE_BASEDIR}")
  else()
    message(STATUS "llcuda: ccache not found; every build compiles from scratch")
  endif()
endif()
set(GGML_CCACHE OFF CACHE BOOL "llcuda sets the compiler launchers itself" FORCE)

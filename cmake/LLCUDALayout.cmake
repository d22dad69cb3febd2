# The payload layout inside a wheel: site-packages/llcuda_<target>/bin/ holds the tools and every shared
# library, once each. These must be set before llama.cpp's targets are created.

set(LLCUDA_BIN_DESTINATION "${LLCUDA_PACKAGE}/bin")

# One unversioned file per library: a wheel cannot store the libfoo.so -> .so.0 -> .so.0.x.y symlinks.
set(CMAKE_PLATFORM_NO_VERSIONED_SONAME ON)
# Everything finds its siblings through $ORIGIN, in the build tree as in the wheel.
set(CMAKE_BUILD_WITH_INSTALL_RPATH ON)
set(CMAKE_INSTALL_RPATH "$ORIGIN")
set(CMAKE_INSTALL_RPATH_USE_LINK_PATH OFF)
set(CMAKE_SKIP_BUILD_RPATH OFF)

# Keep build-machine paths out of __FILE__ strings (assert messages) in the shipped binaries. ccache's base dir
# turns the source path into one relative to the build dir (where ninja runs every command), so map that too.
file(RELATIVE_PATH _llcuda_rel "${CMAKE_BINARY_DIR}" "${LLCUDA_LLAMA_CPP_DIR}")
set(_llcuda_map "-ffile-prefix-map=${LLCUDA_LLAMA_CPP_DIR}=llama.cpp -ffile-prefix-map=${_llcuda_rel}=llama.cpp")
string(APPEND CMAKE_C_FLAGS " ${_llcuda_map}")
string(APPEND CMAKE_CXX_FLAGS " ${_llcuda_map}")
if(LLCUDA_CUDA_ARCHITECTURES)
  string(
    APPEND CMAKE_CUDA_FLAGS
    " -Xcompiler=-ffile-prefix-map=${LLCUDA_LLAMA_CPP_DIR}=llama.cpp"
    " -Xcompiler=-ffile-prefix-map=${_llcuda_rel}=llama.cpp"
  )
endif()

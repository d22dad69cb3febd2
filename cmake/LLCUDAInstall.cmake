# The wheel payload (install component "llcuda"): the tools of the factory (configure.TOOLS), the shared libraries they load (each once),
# the run-time backends, llama.cpp's license and a build-info record.

# Every shared library in the link closure of the given targets.
function(llcuda_shared_closure out)
  set(_seen "")
  set(_todo ${ARGN})
  while(_todo)
    list(POP_FRONT _todo _t)
    if(NOT TARGET ${_t} OR _t IN_LIST _seen)
      continue()
    endif()
    list(APPEND _seen ${_t})
    get_target_property(_alias ${_t} ALIASED_TARGET)
    if(_alias)
      list(APPEND _todo ${_alias})
      continue()
    endif()
    foreach(_prop LINK_LIBRARIES INTERFACE_LINK_LIBRARIES)
      get_target_property(_deps ${_t} ${_prop})
      if(_deps)
        list(APPEND _todo ${_deps})
      endif()
    endforeach()
  endwhile()
  set(_libs "")
  foreach(_t IN LISTS _seen)
    get_target_property(_type ${_t} TYPE)
    get_target_property(_imported ${_t} IMPORTED)
    if(NOT _imported AND _type MATCHES "^(SHARED|MODULE)_LIBRARY$")
      list(APPEND _libs ${_t})
    endif()
  endforeach()
  set(${out} ${_libs} PARENT_SCOPE)
endfunction()

llcuda_shared_closure(LLCUDA_LIBRARIES ${LLCUDA_TOOLS} ${LLCUDA_BACKENDS})

install(TARGETS ${LLCUDA_TOOLS} RUNTIME DESTINATION "${LLCUDA_BIN_DESTINATION}" COMPONENT llcuda)
install(
  TARGETS ${LLCUDA_LIBRARIES}
  LIBRARY DESTINATION "${LLCUDA_BIN_DESTINATION}" COMPONENT llcuda
  # Headers are not shipped (no component "llcuda-dev" is installed into a wheel).
  PUBLIC_HEADER DESTINATION include COMPONENT llcuda-dev
  PRIVATE_HEADER DESTINATION include COMPONENT llcuda-dev
)
install(
  FILES "${LLCUDA_LLAMA_CPP_DIR}/LICENSE"
  DESTINATION "${LLCUDA_PACKAGE}"
  RENAME LICENSE.llama.cpp
  COMPONENT llcuda
)
# gcc-10's libstdc++, carried by one library that every ELF of the wheel links (cmake/LLCUDAToolchain.cmake); in
# the build tree too, for anything run from there.
if(LLCUDA_CXX_RUNTIME)
  install(FILES "${LLCUDA_CXX_RUNTIME}" DESTINATION "${LLCUDA_BIN_DESTINATION}" COMPONENT llcuda)
  file(COPY "${LLCUDA_CXX_RUNTIME}" DESTINATION "${CMAKE_BINARY_DIR}/bin")
  get_filename_component(_name "${LLCUDA_CXX_RUNTIME}" NAME)
  set(_toolchain "g++ ${CMAKE_CXX_COMPILER_VERSION}, Debian 11 sysroot (glibc 2.31, libstdc++ 10 in ${_name})")
else()
  set(_toolchain "native ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}")
endif()

# build_facts.json: what was built, from which source, with which toolchain and options.
set(_opts "")
get_cmake_property(_vars CACHE_VARIABLES)
list(SORT _vars)
foreach(_v IN LISTS _vars)
  get_property(_type CACHE ${_v} PROPERTY TYPE)
  if(_v MATCHES "^(GGML|LLAMA)_" AND NOT _type STREQUAL "INTERNAL" AND NOT _type STREQUAL "STATIC")
    string(REPLACE "\"" "\\\"" _val "${${_v}}")
    string(APPEND _opts "    \"${_v}\": \"${_val}\",\n")
  endif()
endforeach()
string(REGEX REPLACE ",\n$" "\n" _opts "${_opts}")
set(_cuda_version "")
set(_cuda_archs "")
set(_cuda_compiler "")
if(TARGET ggml-cuda)
  set(_cuda_version "${CUDAToolkit_VERSION}")
  get_target_property(_cuda_archs ggml-cuda CUDA_ARCHITECTURES) # what ggml-cuda is really compiled for
  get_filename_component(_host "${CMAKE_CUDA_HOST_COMPILER}" NAME)
  set(_cuda_compiler "NVIDIA ${CUDAToolkit_VERSION} (host ${_host})")
endif()
string(REPLACE ";" "\", \"" _archs_json "${_cuda_archs}")
if(_archs_json)
  set(_archs_json "\"${_archs_json}\"")
endif()
string(REPLACE ";" "\", \"" _backends_json "${LLCUDA_BACKENDS}")
# Where the NVIDIA runtime wheels put their libraries (relative to site-packages) and which wheels those are.
set(_lib_dirs_json "")
set(_wheels_json "")
if(TARGET ggml-cuda)
  string(REPLACE ";" "\", \"" _lib_dirs_json "\"${LLCUDA_CUDA_RPATH_DIRS}\"")
  string(REPLACE ";" "\", \"" _wheels_json "\"${LLCUDA_CUDA_RUNTIME_WHEELS}\"")
endif()
# The RPC protocol version of this build: a client and a server of other versions refuse each other. Read from the
# header (llama.cpp's RPC README lags behind it).
file(
  STRINGS "${LLCUDA_LLAMA_CPP_DIR}/ggml/include/ggml-rpc.h"
  _rpc_defines
  REGEX "^#define RPC_PROTO_(MAJOR|MINOR|PATCH)_VERSION[ \t]+[0-9]+"
)
set(_rpc_version "")
foreach(_part MAJOR MINOR PATCH)
  string(REGEX MATCH "RPC_PROTO_${_part}_VERSION[ \t]+([0-9]+)" _ "${_rpc_defines}")
  set(_number "${CMAKE_MATCH_1}") # if(... MATCHES) below would overwrite CMAKE_MATCH_1
  if(NOT _number MATCHES "^[0-9]+$")
    message(FATAL_ERROR "llcuda: no RPC_PROTO_${_part}_VERSION in ggml/include/ggml-rpc.h")
  endif()
  list(APPEND _rpc_version "${_number}")
endforeach()
list(JOIN _rpc_version "." _rpc_version)
# The build's facts; build_info.json itself has one writer, the factory's build-info command (llcuda_factory.buildinfo),
# which CMake's install step runs: for a CUDA build it adds the oldest driver that runs the built fatbin (SASS and
# PTX-JIT paths), read from the library itself, and the architectures parsed for the runtime.
configure_file("${PROJECT_SOURCE_DIR}/cmake/build_facts.json.in" "${CMAKE_BINARY_DIR}/build_facts.json" @ONLY)
configure_file("${PROJECT_SOURCE_DIR}/cmake/backend__init__.py.in" "${CMAKE_BINARY_DIR}/__init__.py" @ONLY)
set(_build_info_args "\"${CMAKE_BINARY_DIR}/build_facts.json\" --out \"${CMAKE_BINARY_DIR}/build_info.json\"")
if(TARGET ggml-cuda)
  string(
    APPEND _build_info_args
    " --library \"$<TARGET_FILE:ggml-cuda>\" --cuda-major ${CUDAToolkit_VERSION_MAJOR}"
    " --cuobjdump \"${LLCUDA_CUDA_BIN_DIR}/cuobjdump\""
  )
endif()
install(
  CODE
    "execute_process(COMMAND \"${CMAKE_COMMAND}\" -E env \"PYTHONPATH=${PROJECT_SOURCE_DIR}/factory\"
          \"${Python_EXECUTABLE}\" -m llcuda_factory build-info ${_build_info_args} COMMAND_ERROR_IS_FATAL ANY)"
  COMPONENT llcuda
)
install(
  FILES "${CMAKE_BINARY_DIR}/build_info.json" "${CMAKE_BINARY_DIR}/__init__.py"
  DESTINATION "${LLCUDA_PACKAGE}"
  COMPONENT llcuda
)

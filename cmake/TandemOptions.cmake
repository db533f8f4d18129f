# Build options shared by every Tandem target, applied through the interface target
# tandem::options (no global flags).
add_library(tandem_options INTERFACE)
add_library(tandem::options ALIAS tandem_options)
target_compile_options(tandem_options INTERFACE -Wall -Wextra -Wno-unused-parameter)
if(TANDEM_WERROR)
  target_compile_options(tandem_options INTERFACE -Werror)
endif()

if(TANDEM_SANITIZE)
  string(REPLACE "," ";" _tandem_sanitizers "${TANDEM_SANITIZE}")
  foreach(_s IN LISTS _tandem_sanitizers)
    if(NOT _s MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "TANDEM_SANITIZE: unknown sanitizer '${_s}' (known: address, undefined, thread, leak)")
    endif()
  endforeach()
  if("thread" IN_LIST _tandem_sanitizers AND "address" IN_LIST _tandem_sanitizers)
    message(FATAL_ERROR "TANDEM_SANITIZE: thread and address sanitizers cannot be combined")
  endif()
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=${TANDEM_SANITIZE}")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=${TANDEM_SANITIZE}")
  check_cxx_source_compiles("int main() { return 0; }" TANDEM_SANITIZER_WORKS)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT TANDEM_SANITIZER_WORKS)
    message(FATAL_ERROR "TANDEM_SANITIZE=${TANDEM_SANITIZE}: the compiler cannot build with it")
  endif()
  target_compile_options(tandem_options INTERFACE -fsanitize=${TANDEM_SANITIZE} -fno-omit-frame-pointer -g)
  target_link_options(tandem_options INTERFACE -fsanitize=${TANDEM_SANITIZE})
endif()

if(TANDEM_USE_CCACHE)
  find_program(TANDEM_CCACHE ccache)
  if(TANDEM_CCACHE)
    # pch_defines/time_macros let ccache cache objects built against the precompiled header.
    set(CMAKE_CXX_COMPILER_LAUNCHER
        ${CMAKE_COMMAND} -E env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
        ${TANDEM_CCACHE})
    set(CMAKE_C_COMPILER_LAUNCHER ${CMAKE_CXX_COMPILER_LAUNCHER})
  endif()
endif()

# Targets that include LibTorch headers call this: the first one precompiles them, the
# others reuse that precompiled header (one ~20 s parse instead of one per file).
function(tandem_use_torch_pch target)
  if(NOT TANDEM_USE_PCH)
    return()
  endif()
  if(NOT TARGET tandem_torch_pch)
    message(FATAL_ERROR "tandem_use_torch_pch(${target}) called before runtime/ defined tandem_torch_pch")
  endif()
  set_target_properties(${target} PROPERTIES PRECOMPILE_HEADERS_REUSE_FROM tandem_torch_pch)
endfunction()

# CMake toolchain file: cross-build for 64-bit Windows with Debian's mingw-w64.
#
#   cmake -S . -B build/windows -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=installer/mingw-w64-x86_64.cmake
#
# Third-party libraries (static libuv, SQLite and cJSON) come from the prefix made by
# installer/build-windows-deps.sh: SB_WIN_DEPS (cache variable, else environment
# variable, else /var/cache/streambroker/win-deps/x86_64-w64-mingw32). In it:
#   include/uv.h, include/uv/*.h, lib/libuv.a
#   include/sqlite3.h, lib/libsqlite3.a
#   include/cjson/cJSON.h, lib/libcjson.a
# Link libuv together with ${SB_WIN_UV_LIBS}, the Windows system libraries it needs.
#
# Executables are linked with -static: they need no MinGW DLL (libgcc_s, libwinpthread,
# libstdc++) at run time, only system DLLs. Tests run under Wine through
# CMAKE_CROSSCOMPILING_EMULATOR (tests/windows/wine-run.sh, which wants SB_WINEPREFIX).

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(SB_WIN_TRIPLE x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${SB_WIN_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${SB_WIN_TRIPLE}-g++)
set(CMAKE_RC_COMPILER ${SB_WIN_TRIPLE}-windres)

# Where build-windows-deps.sh installed the static libraries.
if(NOT SB_WIN_DEPS)
  if(DEFINED ENV{SB_WIN_DEPS} AND NOT "$ENV{SB_WIN_DEPS}" STREQUAL "")
    set(SB_WIN_DEPS "$ENV{SB_WIN_DEPS}")
  else()
    set(SB_WIN_DEPS "/var/cache/streambroker/win-deps/${SB_WIN_TRIPLE}")
  endif()
endif()
set(SB_WIN_DEPS "${SB_WIN_DEPS}" CACHE PATH
    "Prefix with the cross-built static libuv, SQLite and cJSON (installer/build-windows-deps.sh)")
# try_compile() projects read this file again: hand them the same prefix.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SB_WIN_DEPS)

# Search headers, libraries and packages only in the MinGW sysroot and the deps prefix;
# programs (tools that run on the build machine) only on the host.
set(CMAKE_FIND_ROOT_PATH /usr/${SB_WIN_TRIPLE} "${SB_WIN_DEPS}")
list(APPEND CMAKE_PREFIX_PATH "${SB_WIN_DEPS}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# No MinGW runtime DLLs at run time: executables are linked fully static (libgcc,
# libwinpthread, libstdc++ included); DLLs, should there be any, get libgcc and
# libstdc++ linked in.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static -static-libgcc")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")

# Windows system libraries a static libuv needs (those its CMakeLists.txt names for
# 1.44; psapi is unused with MinGW but harmless). Link them after libuv. Newer libuv
# (1.45+) also wants dbghelp ole32 shell32.
set(SB_WIN_UV_LIBS psapi user32 advapi32 iphlpapi userenv ws2_32)

# Run test programs (and try_run) under Wine.
get_filename_component(_sb_wine_run "${CMAKE_CURRENT_LIST_DIR}/../tests/windows/wine-run.sh"
                       ABSOLUTE)
set(CMAKE_CROSSCOMPILING_EMULATOR "${_sb_wine_run}")
unset(_sb_wine_run)

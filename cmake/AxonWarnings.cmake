# Project-wide warning policy: every axon target builds warning-free.
add_library(axon_warnings INTERFACE)
# C++-only flags sit behind a generator expression: C targets (the C ABI example) link this too.
target_compile_options(axon_warnings INTERFACE -Wall -Wextra -Werror -Wshadow
                                               "$<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor;-Wold-style-cast>")
add_library(axon::warnings ALIAS axon_warnings)

# g++ 12 at -O3 reports impossible overlaps inside std::string's operator+ (GCC bug 105651,
# fixed in 13); with -Werror that false positive would break any file that concatenates
# strings, so only that one diagnostic is turned off, only for that compiler.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(axon_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-restrict>)
endif()

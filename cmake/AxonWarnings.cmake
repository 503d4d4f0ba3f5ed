# Project-wide warning policy: every axon target builds warning-free.
add_library(axon_warnings INTERFACE)
# C++-only flags sit behind a generator expression: C targets (the C ABI example) link this too.
target_compile_options(axon_warnings INTERFACE -Wall -Wextra -Werror -Wshadow
                                               "$<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor;-Wold-style-cast>")
add_library(axon::warnings ALIAS axon_warnings)

# Project-wide warning policy: every axon target builds warning-free.
add_library(axon_warnings INTERFACE)
target_compile_options(axon_warnings INTERFACE -Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor
                                               $<$<COMPILE_LANGUAGE:CXX>:-Wold-style-cast>)
add_library(axon::warnings ALIAS axon_warnings)

# Sanitizer presets (asan = ASan+UBSan, tsan) applied to every target in the tree.
if(AXON_SANITIZER STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
elseif(AXON_SANITIZER STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT AXON_SANITIZER STREQUAL "")
  message(FATAL_ERROR "AXON_SANITIZER must be empty, 'address' or 'thread' (got '${AXON_SANITIZER}')")
endif()

# axon_add_test(NAME target [LABELS ...] [TIMEOUT s]): registers a GoogleTest binary with CTest,
# with a bounded timeout and sanitizer options that make failures loud.
function(axon_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${ARG_TIMEOUT}
    LABELS "${ARG_LABELS}"
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")
endfunction()

# Sanitizer presets (asan = ASan+UBSan, tsan) applied to every target in the tree.
if(AXON_SANITIZER STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
elseif(AXON_SANITIZER STREQUAL "thread")
  # TSan does not model standalone fences (g++ warns); the eventcount fences only order
  # wakeups, not data, so the data-race analysis stays sound without them.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  add_link_options(-fsanitize=thread)
elseif(NOT AXON_SANITIZER STREQUAL "")
  message(FATAL_ERROR "AXON_SANITIZER must be empty, 'address' or 'thread' (got '${AXON_SANITIZER}')")
endif()

# axon_add_test(NAME target [LABELS ...] [TIMEOUT s]): registers a GoogleTest binary with CTest,
# with a bounded timeout and sanitizer options that make failures loud.
# The tests the sanitizer presets run (labels shm and dataplane) hang off this target, so a
# sanitizer build compiles just them and what they need, not the whole tree.
add_custom_target(axon_sanitizer_tests)

function(axon_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LABELS" ${ARGN})
  if("shm" IN_LIST ARG_LABELS OR "dataplane" IN_LIST ARG_LABELS)
    add_dependencies(axon_sanitizer_tests ${name})
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  # Test code itself is built at -O1 (the libraries under test keep the preset's
  # optimisation): the large integration test files compile 2-3x faster, which keeps the
  # CI run, three builds on two cores, inside its time budget. Tests are never timed.
  target_compile_options(${name} PRIVATE $<$<CONFIG:Release>:-O1>)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${ARG_TIMEOUT}
    LABELS "${ARG_LABELS}"
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")
endfunction()

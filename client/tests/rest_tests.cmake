# Included from client/tests/CMakeLists.txt: tests of axon::rest_client and axonctl's REST
# commands. Labelled `client`.
#
#   axon_rest_client_tests  HTTP parsing, and the client against TLS and unix-socket servers
#                           the test runs in-process with certificates it generates (openssl
#                           CLI): verification on/off, host name mismatch, mTLS, timeouts,
#                           refused connections.
#   axonctl_unit_tests      table rendering, argument -> request mapping through the real
#                           CLI parser with a recording transport, error lines and exit codes.
find_package(OpenSSL 3 REQUIRED)
find_program(AXON_OPENSSL_BIN openssl REQUIRED)

add_executable(axon_rest_client_tests test_rest_client.cc test_tls_server.cc)
target_compile_definitions(axon_rest_client_tests PRIVATE AXON_OPENSSL_BIN="${AXON_OPENSSL_BIN}")
target_link_libraries(axon_rest_client_tests
  PRIVATE axon::rest_client OpenSSL::SSL OpenSSL::Crypto Threads::Threads GTest::gtest_main axon::warnings)
axon_add_test(axon_rest_client_tests LABELS client TIMEOUT 120)

add_executable(axonctl_unit_tests test_axonctl.cc test_top_view.cc)
target_link_libraries(axonctl_unit_tests PRIVATE axonctl_lib GTest::gtest_main axon::warnings)
axon_add_test(axonctl_unit_tests LABELS client TIMEOUT 60)

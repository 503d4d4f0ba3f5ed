# axon's Debian package: install rules for everything an appliance host needs, and CPack's
# DEB generator. `cmake --build --preset release --target package` writes
# build/release/axon_<version>_<arch>.deb; deploy/install.sh installs through it, and
# tests/deploy/package_test.sh installs and removes it in a throwaway root and runs lintian.
#
# Layout (package prefix /usr):
#   /usr/bin/                        axon-dataplane, axon-controlplane, axonctl, axon-dataplane-stats
#   /usr/lib/axon/                   echo_worker (the example worker the default config runs), axon-setup
#   /usr/lib/                        libaxon_worker.so (the worker SDK's C ABI, for Python and C workers)
#   /usr/lib/python3/dist-packages/  axon_worker.py (Python worker SDK)
#   /lib/systemd/system/             axon-dataplane.service, axon-controlplane.service (+ .socket)
#   /usr/lib/sysusers.d/axon.conf, /usr/lib/tmpfiles.d/axon.conf
#   /etc/axon/{dataplane,controlplane}.toml   annotated defaults, dpkg conffiles
#   /usr/share/axon/tuning/profiles/ tuning profiles (axonctl tune list)
#   /usr/share/doc/axon/             README, docs, OpenAPI spec, copyright, changelog
# The units and configs in deploy/ name /usr/local/bin (install.sh's historic prefix); the
# package's copies are rewritten here to the paths above.
include(GNUInstallDirs)
set(CMAKE_INSTALL_DEFAULT_COMPONENT_NAME axon)

set(AXON_PKG_STAGE ${CMAKE_BINARY_DIR}/package-files)
file(MAKE_DIRECTORY ${AXON_PKG_STAGE})

# axon_pkg_rewrite(SOURCE DEST): copies SOURCE with the paths the package uses instead of
# install.sh's /usr/local ones (binaries, the example worker, the worker directory).
function(axon_pkg_rewrite source dest)
  file(READ ${source} text)
  string(REPLACE "/usr/local/bin/echo_worker" "/usr/lib/axon/echo_worker" text "${text}")
  string(REPLACE "/usr/local/bin/" "/usr/bin/" text "${text}")
  string(REPLACE "/usr/local/lib/axon/" "/usr/lib/axon/" text "${text}")
  file(WRITE ${dest} "${text}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${source})
endfunction()

# --- programs and libraries ---------------------------------------------------------------
foreach(bin axon-dataplane axon-controlplane axonctl axon-dataplane-stats)
  if(TARGET ${bin})
    install(TARGETS ${bin} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT axon)
  endif()
endforeach()
if(TARGET echo_worker)
  install(TARGETS echo_worker RUNTIME DESTINATION lib/axon COMPONENT axon)
endif()
if(TARGET axon_worker)
  install(TARGETS axon_worker LIBRARY DESTINATION lib COMPONENT axon)
endif()
install(PROGRAMS ${CMAKE_SOURCE_DIR}/deploy/debian/axon-setup DESTINATION lib/axon COMPONENT axon)
install(FILES ${CMAKE_SOURCE_DIR}/sdk/python/axon_worker.py DESTINATION lib/python3/dist-packages COMPONENT axon)

# --- systemd units, sysusers and tmpfiles --------------------------------------------------
foreach(unit axon-dataplane.service axon-controlplane.service axon-controlplane.socket)
  axon_pkg_rewrite(${CMAKE_SOURCE_DIR}/deploy/systemd/${unit} ${AXON_PKG_STAGE}/${unit})
  install(FILES ${AXON_PKG_STAGE}/${unit} DESTINATION /lib/systemd/system COMPONENT axon)
endforeach()
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/axon.sysusers.conf DESTINATION lib/sysusers.d RENAME axon.conf
        COMPONENT axon)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/axon.tmpfiles.conf DESTINATION lib/tmpfiles.d RENAME axon.conf
        COMPONENT axon)

# --- annotated default configs (conffiles: dpkg never overwrites a changed one) -------------
axon_pkg_rewrite(${CMAKE_SOURCE_DIR}/deploy/axon-dataplane.toml ${AXON_PKG_STAGE}/dataplane.toml)
axon_pkg_rewrite(${CMAKE_SOURCE_DIR}/deploy/axon-controlplane.toml ${AXON_PKG_STAGE}/controlplane.toml)
install(FILES ${AXON_PKG_STAGE}/dataplane.toml ${AXON_PKG_STAGE}/controlplane.toml DESTINATION /etc/axon
        COMPONENT axon)

# --- tuning profiles, docs ------------------------------------------------------------------
install(DIRECTORY ${CMAKE_SOURCE_DIR}/tuning/profiles/ DESTINATION share/axon/tuning/profiles COMPONENT axon
        FILES_MATCHING PATTERN "*.toml")
set(AXON_DOC_DIR share/doc/axon)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${AXON_DOC_DIR} COMPONENT axon)
file(GLOB AXON_DOCS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${AXON_DOCS} ${CMAKE_SOURCE_DIR}/docs/api/openapi.yaml DESTINATION ${AXON_DOC_DIR} COMPONENT axon)
install(FILES ${CMAKE_SOURCE_DIR}/examples/python_echo_worker.py DESTINATION ${AXON_DOC_DIR}/examples COMPONENT axon)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/debian/copyright DESTINATION ${AXON_DOC_DIR} COMPONENT axon)
# Debian wants a compressed changelog without a timestamp in its gzip header (changelog.gz:
# a native package, no Debian revision).
add_custom_command(OUTPUT ${AXON_PKG_STAGE}/changelog.gz
                   COMMAND gzip -9n -c ${CMAKE_SOURCE_DIR}/deploy/debian/changelog > ${AXON_PKG_STAGE}/changelog.gz
                   DEPENDS ${CMAKE_SOURCE_DIR}/deploy/debian/changelog)
add_custom_target(axon_package_files ALL DEPENDS ${AXON_PKG_STAGE}/changelog.gz)
install(FILES ${AXON_PKG_STAGE}/changelog.gz DESTINATION ${AXON_DOC_DIR} COMPONENT axon)

# --- CPack DEB ------------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME axon)
set(CPACK_PACKAGE_VENDOR "axon")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "kernel-assisted data plane for AI-agent worker processes")
set(CPACK_PACKAGE_DESCRIPTION
    "axon puts an XDP/eBPF front door and a poll-mode data plane (AF_XDP, DPDK
or io_uring) in front of agent worker processes, which it feeds through
per-worker hugepage shared-memory rings. A control plane keeps warm worker
pools in cgroups and serves an HTTPS REST API; axonctl is its client. Host
tuning profiles (axonctl tune) prepare and verify the host and roll their
changes back.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# A placeholder address (example.org is reserved for that): set the real one before publishing.
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "axon maintainers <axon@example.org>")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from the binaries themselves (dpkg-shlibdeps), plus what the
# maintainer scripts and the units call.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "openssl, adduser | systemd, iproute2")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ethtool, python3")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/deploy/debian/conffiles
    ${CMAKE_SOURCE_DIR}/deploy/debian/postinst
    ${CMAKE_SOURCE_DIR}/deploy/debian/prerm
    ${CMAKE_SOURCE_DIR}/deploy/debian/postrm
    ${CMAKE_SOURCE_DIR}/deploy/debian/triggers)
set(CPACK_COMPONENTS_ALL axon)
set(CPACK_DEB_COMPONENT_INSTALL OFF)
include(CPack)

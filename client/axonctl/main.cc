// axonctl: the command-line client of the axon appliance. The CLI itself lives in app.cc
// (a library, so the tests can run it in-process); main() only runs it.
#include "commands.h"

int main(int argc, char** argv) {
  axon::ctl::GlobalOptions global;
  return axon::ctl::run_axonctl(argc, argv, global);
}

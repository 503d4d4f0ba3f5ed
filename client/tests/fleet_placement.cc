// axon_fleet_placement: prints FleetClient's rendezvous order for each input line, so that a
// test can check that another implementation (the Python client's axon_client.fleet) places
// every key on the same member. Input lines: "<tenant> <agent> <session_key> <id>[,<id>...]";
// output lines: the ids, comma-separated, in the order a call would try them.
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "axon/client/fleet.h"

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::uint32_t tenant = 0, agent = 0;
    std::uint64_t session = 0;
    std::string list;
    if (!(in >> tenant >> agent >> session >> list)) {
      std::cerr << "axon_fleet_placement: expected '<tenant> <agent> <session_key> <id>[,<id>...]', got '" << line
                << "'\n";
      return 2;
    }
    std::vector<std::string> ids;
    std::istringstream parts(list);
    for (std::string id; std::getline(parts, id, ',');) ids.push_back(id);
    const auto order = axon::client::rendezvous_order(ids, axon::client::fleet_key(tenant, agent, session));
    for (std::size_t i = 0; i < order.size(); ++i) std::cout << (i ? "," : "") << ids[order[i]];
    std::cout << '\n';
  }
  return 0;
}
